#!/usr/bin/env bash
# Chromium and its WebDriver for the report's browser check (scripts/report_browser.py and
# tests/test_workflow.py::test_the_report_opens_in_a_browser_with_the_headline_and_every_table).
# `make browser-tools` (CI runs it before `make test`): installs Debian's chromium and
# chromium-driver with apt-get when they are missing and this is root on a machine with
# apt-get; otherwise it says why not and exits 0, and the browser test skips, naming what is
# missing. Nothing else is changed.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then
    echo "browser-tools: chromium and chromedriver present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null; then
    echo "browser-tools: not installing ${PACKAGES[*]} (needs root and apt-get); the browser test will skip"
    exit 0
fi
log=$(mktemp /tmp/guider-browser-apt.XXXXXX)
export DEBIAN_FRONTEND=noninteractive
if { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } > "$log" 2>&1; then
    echo "browser-tools: installed ${PACKAGES[*]}"
else
    echo "browser-tools: apt-get install ${PACKAGES[*]} failed (log: $log); the browser test will skip"
fi

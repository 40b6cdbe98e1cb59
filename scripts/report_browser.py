"""Open the workflow's HTML report in headless Chromium, as a reader would, and check it.

    python scripts/report_browser.py results/report.html --screenshots results/report_shots

Checks that the landing page states the headline ("The answer" and its table, rendered), then
opens the report's Tables category and every table the study made (main, ablation,
baselines, robustness, tuning: those the report embeds) and checks that each renders as an
HTML table with rows. Writes a screenshot of the landing page and of each table. Exit 0 when
all is there, 1 naming what is missing, 3 when Chromium, its driver or Selenium is absent.

Needs Chromium and its WebDriver (Debian: `apt-get install chromium chromium-driver`) and
Selenium (`pip install -e '.[browser]'`). Nothing is downloaded: the driver and browser are
the local ones (Selenium Manager and its usage statistics are switched off).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

TABLES = ("main", "ablation", "baselines", "robustness", "tuning")
WAIT_SECONDS = 30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report (snakemake --report results/report.html)")
    parser.add_argument("--screenshots", type=Path, help="folder for landing.png and one PNG per table")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver"))
    return parser.parse_args(argv)


def embedded_tables(report: Path) -> list[str]:
    """The tables of TABLES the report embeds (their HTML pages), in that order."""
    names = set(re.findall(r'"filename": "([^"]+)\.html"', report.read_text(errors="replace")))
    return [name for name in TABLES if name in names]


# --disable-dev-shm-usage: containers (CI) often give /dev/shm 64 MiB, too little for Chromium
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def browser(chromium: str, chromedriver: str):
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager would report usage over the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def wait_for(find, what: str):
    """Poll `find()` until it returns something truthy; None after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.25)
    print(f"missing: {what}", file=sys.stderr)
    return None


def check_landing(driver, shots: Path | None) -> list[str]:
    from selenium.webdriver.common.by import By

    problems = []
    heading = wait_for(lambda: driver.find_elements(By.XPATH, "//h1[normalize-space()='The answer']"), "headline")
    if not heading:
        return ["the landing page has no 'The answer' section"]
    section = heading[0].find_element(By.XPATH, "./ancestor::*[.//table][1]")
    rows = section.find_elements(By.XPATH, "(.//table)[1]//tr")
    problems += overflowing_tables(driver, section) + clipped_top(driver, section)
    header = rows[0].text if rows else ""
    if len(rows) < 2 or "+GUIDER" not in header:
        problems.append(f"the headline table is not rendered (rows {len(rows)}, header {header!r})")
    else:
        print(f"landing page: 'The answer' with a table of {len(rows) - 1} comparisons ({header.split()[0]} ...)")
    if shots:
        driver.execute_script("arguments[0].scrollIntoView();", heading[0])
        driver.save_screenshot(str(shots / "landing.png"))
    return problems


def overflowing_tables(driver, section) -> list[str]:
    """Tables wider than the landing page's text column (they run under the workflow graph)."""
    widths = driver.execute_script(
        "const right = arguments[0].getBoundingClientRect().right;"
        "return [...arguments[0].querySelectorAll('table')].map(t => [t.getBoundingClientRect().right, right]);",
        section,
    )
    return [
        f"the landing page's table {index} overflows its column by {table - column:.0f} px"
        for index, (table, column) in enumerate(widths, 1)
        if table > column + 1
    ]


def clipped_top(driver, section) -> list[str]:
    """Scrolled to the top, does the landing page's text start inside the window? (Snakemake's
    page centres a tall page and cut its top off out of reach; the default profile's
    report.css fixes that.)"""
    top = driver.execute_script(
        "let node = arguments[0]; const page = node.closest('.document') || node;"
        "for (; node; node = node.parentElement) node.scrollTop = 0;"
        "return page.getBoundingClientRect().top;",
        section,
    )
    return [f"the landing page's first {-top:.0f} px are cut off above the window"] if top < 0 else []


def check_table(driver, name: str, shots: Path | None) -> str | None:
    from selenium.webdriver.common.by import By

    eye = f"//tr[td[normalize-space()='results/tables/{name}.html']]//a[@iconname='eye']"
    button = wait_for(lambda: driver.find_elements(By.XPATH, eye), f"{name}.html in the Tables category")
    if not button:
        return f"{name}.html is not listed in the Tables category"
    button[0].click()
    frame = wait_for(lambda: driver.find_elements(By.XPATH, f"//iframe[contains(@src, 'filename={name}.html')]"),
                     f"{name}.html shown")  # fmt: skip
    if not frame:
        return f"{name}.html does not open"
    driver.switch_to.frame(frame[0])
    try:
        rows = driver.find_elements(By.XPATH, "//table//tr")
        caption = (driver.find_elements(By.XPATH, "//table/caption | //p | //b") or [None])[0]
        title = caption.text.splitlines()[0] if caption is not None and caption.text else ""
    finally:
        driver.switch_to.default_content()
    if len(rows) < 2:
        return f"{name}.html renders no table rows"
    print(f"table {name}: {len(rows)} rows rendered ({title[:70]})")
    if shots:
        driver.save_screenshot(str(shots / f"{name}.png"))
    return None


def open_tables(driver) -> bool:
    from selenium.webdriver.common.by import By

    link = wait_for(lambda: driver.find_elements(By.XPATH, "//a[span[normalize-space()='Tables']]"), "Tables link")
    if not link:
        return False
    link[0].click()
    return True


def check(report: Path, chromium: str, chromedriver: str, shots: Path | None) -> list[str]:
    tables = embedded_tables(report)
    problems = [f"the report embeds no {name}.html" for name in TABLES[:3] if name not in tables]
    driver = browser(chromium, chromedriver)
    try:
        driver.get(report.resolve().as_uri())
        problems += check_landing(driver, shots)
        if not open_tables(driver):
            return [*problems, "the report has no Tables category"]
        problems += [p for p in (check_table(driver, name, shots) for name in tables) if p]
    finally:
        driver.quit()
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("needs Selenium: pip install -e '.[browser]'", file=sys.stderr)
        return 3
    if not args.chromium or not args.chromedriver:
        print("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)", file=sys.stderr)
        return 3
    if not args.report.is_file():
        print(f"{args.report}: no such report", file=sys.stderr)
        return 1
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    problems = check(args.report, args.chromium, args.chromedriver, args.screenshots)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("report OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

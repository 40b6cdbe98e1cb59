"""The on-disk dataset format (MMRec-compatible): the Dataset object (`dataset`), reading and
writing folders (`mmrec`) and the fingerprint that binds a run to its data (`fingerprint`)."""

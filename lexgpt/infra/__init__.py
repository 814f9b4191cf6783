"""Infrastructure every other package leans on: files, hashes, locks, signals, paths.

- ``atomic``         atomic file writes for everything in the data lake
- ``hashing``        content hashes recorded with every artifact
- ``lock``           one writer per home folder (a lock file naming its holder)
- ``interrupts``     Ctrl-C that stops a long loop even where a library drops it
- ``workers``        process-pool workers that do not run the parent's signal handlers
- ``paths``          where the local stores live
- ``stable_read``    read a source file once, refuse it if it changed meanwhile
"""

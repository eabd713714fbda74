"""Exit statuses the tools share with the study executors (which must not import the engine)."""

# EX_TEMPFAIL: the run stopped on request (SIGTERM / SIGUSR2) after saving what it needs to resume;
# run the same command again with --resume
STOPPED_EXIT_CODE = 75

"""One module per ``symsweep`` subcommand."""

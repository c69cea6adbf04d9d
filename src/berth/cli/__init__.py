"""berth, the command-line client. It speaks docker's syntax and reaches berthd through docker-py."""

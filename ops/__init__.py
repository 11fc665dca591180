"""Everything an operator runs besides the server, one sub-package per concept; ``python -m ops`` is its CLI.

``stack`` boots the local topology, ``corpus`` generates and loads the synthetic corpus, ``ingest`` bulk-loads
real pages, ``maintenance`` keeps partitions and statistics in shape, ``bench`` and ``drills`` measure, and
``common`` holds the helpers they share. The server (``gateway``) never imports this package.
"""

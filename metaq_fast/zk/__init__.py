"""ZooKeeper for metaq_fast: MetaQ's tree layout, a real local server, and (later) kazoo helpers.

- ``paths``: pure path builders and node-data formats of MetaQ's tree (no kazoo).
- ``server``: ``LocalZooKeeper``, a real Apache ZooKeeper child process (tests, CI, local mode),
  and the ``four_letter_word`` / ``zookeeper_answers`` probes.
- ``registry``: registration and watch helpers on top of kazoo.

Nothing is imported here, so ``import metaq_fast.zk.paths`` pulls in neither kazoo nor
subprocess machinery.
"""

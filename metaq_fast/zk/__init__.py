"""ZooKeeper for metaq_fast: MetaQ's tree layout, a real local server, and the kazoo side.

- ``paths``: pure path builders and node-data formats of MetaQ's tree (no kazoo).
- ``server``: ``LocalZooKeeper``, a real Apache ZooKeeper child process (tests, CI, local mode),
  and the ``four_letter_word`` / ``zookeeper_answers`` probes.
- ``session``: opening a kazoo client (connect string, chroot, timeouts).
- ``ops``: deadline-bound ZooKeeper operations (``DeadlineOps``).
- ``desired``: what a broker wants registered and what it has applied (no I/O).
- ``broker_nodes``: the writes to one broker's own nodes.
- ``registry``: ``BrokerRegistry``, the reconciler that keeps those nodes true across sessions.
- ``cluster``: ``ClusterView``, the clients' watched view of brokers and partitions.

Nothing is imported here, so ``import metaq_fast.zk.paths`` pulls in neither kazoo nor
subprocess machinery.
"""

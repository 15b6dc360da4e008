"""Who may claim a broker id's master role, and what the claim writes (zk/replica_state.py)."""

import pytest

from metaq_fast.zk.replica_state import ReplicaState, claimed_state, may_claim

STATE = ReplicaState(4, "m", ("m", "s0"))


@pytest.mark.parametrize("state, me, held, unclean, expected", [
    (None, "m", False, False, True),  # the first master of a broker id is its m
    (None, "s0", False, False, False),  # a slave never creates the state
    (STATE, "m", False, False, True),  # the leader restarting
    (STATE, "s0", False, False, True),  # in sync, the master gone
    (STATE, "s1", False, False, False),  # not in sync
    (STATE, "s1", False, True, True),  # not in sync, but uncleanTakeover
    (STATE, "s0", True, True, False),  # a live session holds the master node: never
    (STATE, "m", True, False, False),
])
def test_may_claim(state, me, held, unclean, expected):
    assert may_claim(state, me, held, unclean) is expected


def test_claims_bump_the_epoch_and_drop_the_old_leader():
    assert claimed_state(None, "m") == ReplicaState(1, "m", ("m",))
    assert claimed_state(STATE, "m") == ReplicaState(5, "m", ("m", "s0"))
    assert claimed_state(ReplicaState(4, "m", ("m", "s0", "s1")), "s1") == \
        ReplicaState(5, "s1", ("s1", "s0"))
    assert claimed_state(STATE, "s3") == ReplicaState(5, "s3", ("s3", "s0"))  # unclean


def test_state_round_trips_and_refuses_garbage():
    assert ReplicaState.parse(STATE.to_bytes()) == STATE
    for bad in (b"{}", b"[]", b"not json", b'{"epoch":0,"leader":"m","isr":["m"]}',
                b'{"epoch":2,"leader":"s0","isr":["m"]}'):
        with pytest.raises(ValueError):
            ReplicaState.parse(bad)

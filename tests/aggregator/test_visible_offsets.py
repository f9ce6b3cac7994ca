"""What the consumer group is shown: the positions Postgres committed, for partitions held."""

from __future__ import annotations

from aggregator.visible_offsets import VisibleOffsets


class Group:
    def __init__(self, assigned: set[int]) -> None:
        self.assigned = frozenset(assigned)
        self.shown: list[dict[int, int]] = []

    def show_positions(self, offsets: dict[int, int]) -> None:
        self.shown.append(offsets)


def test_the_latest_position_of_each_held_partition_is_shown_once() -> None:
    visible, group = VisibleOffsets(), Group({0, 1})
    visible.committed({0: 10, 1: 5})
    visible.committed({0: 20})
    visible.flush(group)
    visible.flush(group)
    assert group.shown == [{0: 20, 1: 5}]


def test_a_partition_no_longer_held_is_not_shown() -> None:
    visible, group = VisibleOffsets(), Group({1})
    visible.committed({0: 10, 1: 5})
    visible.flush(group)
    assert group.shown == [{1: 5}]
    visible.flush(Group({0, 1}))  # dropped: the new owner shows its own
    assert group.shown == [{1: 5}]


def test_on_revocation_only_the_revoked_partitions_are_shown_and_the_rest_waits() -> None:
    visible, group = VisibleOffsets(), Group({0, 1, 2})
    visible.committed({0: 10, 1: 5, 2: 7})
    visible.flush(group, only=[1])
    visible.flush(group)
    assert group.shown == [{1: 5}, {0: 10, 2: 7}]

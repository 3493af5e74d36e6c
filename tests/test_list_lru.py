"""list_lru (mm/list_lru.c, v5.11; spec §5) and RFC 1/3's list_lru_get_mru (spec §1.2)."""

import pytest

from gpalloc import Machine
from gpalloc.mm.list_lru import (
    LRU_REMOVED,
    LRU_REMOVED_RETRY,
    LRU_RETRY,
    LRU_ROTATE,
    LRU_SKIP,
    list_lru_add,
    list_lru_count,
    list_lru_count_node,
    list_lru_count_one,
    list_lru_del,
    list_lru_get_mru,
    list_lru_init,
    list_lru_init_memcg,
    list_lru_isolate,
    list_lru_isolate_move,
    list_lru_memcg_aware,
    list_lru_shrink_count,
    list_lru_shrink_walk,
    list_lru_walk,
    list_lru_walk_node,
    list_lru_walk_one,
)
from gpalloc.mm.vmscan import shrink_control


def nid_of(item):
    """Items are (node, name) tuples: the node is derived from the item itself."""
    return item[0]


def memcg_of(item):
    return item[2] if len(item) > 2 else None


@pytest.fixture
def k():
    return Machine(nodes=2, patches=(1,)).k


@pytest.fixture
def lru(k):
    return list_lru_init(k, nid_of, name="test")


def _items(lru, nid=0):
    return list(lru.node[nid].lru.list)


def _walk(lru, nid, policy, nr_to_walk=100, memcg=None):
    """Walk one list; ``policy(item, visit_no)`` returns the lru_status; removals isolate."""
    visits = []

    def isolate(item, lst, arg):
        visits.append(item)
        ret = policy(item, visits.count(item))
        if ret in (LRU_REMOVED, LRU_REMOVED_RETRY):
            list_lru_isolate(lst, item)
        return ret

    isolated, left = list_lru_walk_one(lru, nid, memcg, isolate, None, nr_to_walk)
    return visits, isolated, left


# ---------------------------------------------------------------- add / del / count


def test_add_returns_true_then_false(lru):
    a = (0, "a")
    assert list_lru_add(lru, a) is True
    assert list_lru_add(lru, a) is False          # already queued
    assert list_lru_count_node(lru, 0) == 1
    assert list_lru_count(lru) == 1


def test_del_returns_true_then_false(lru):
    a = (0, "a")
    assert list_lru_del(lru, a) is False          # never added
    list_lru_add(lru, a)
    assert list_lru_del(lru, a) is True
    assert list_lru_del(lru, a) is False
    assert list_lru_count(lru) == 0
    assert list_lru_add(lru, a) is True           # can be queued again


def test_node_is_derived_from_the_item(lru):
    list_lru_add(lru, (1, "x"))
    list_lru_add(lru, (1, "y"))
    list_lru_add(lru, (0, "z"))
    assert list_lru_count_node(lru, 0) == 1
    assert list_lru_count_node(lru, 1) == 2
    assert list_lru_count_one(lru, 1) == 2
    assert list_lru_count(lru) == 3
    assert _items(lru, 1) == [(1, "x"), (1, "y")]
    assert list_lru_del(lru, (1, "x")) is True
    assert list_lru_count_node(lru, 1) == 1
    assert list_lru_count_node(lru, 0) == 1


def test_add_appends_at_the_tail(lru):
    for name in "abcd":
        list_lru_add(lru, (0, name))
    assert _items(lru) == [(0, n) for n in "abcd"]
    list_lru_del(lru, (0, "b"))
    list_lru_add(lru, (0, "b"))
    assert _items(lru) == [(0, n) for n in "acdb"]


def test_shrink_count_uses_sc_nid(lru):
    for i in range(3):
        list_lru_add(lru, (1, i))
    list_lru_add(lru, (0, "only"))
    assert list_lru_shrink_count(lru, shrink_control(gfp_mask=0xCC0, nid=1)) == 3
    assert list_lru_shrink_count(lru, shrink_control(gfp_mask=0xCC0, nid=0)) == 1


def test_bad_node_refused(lru):
    with pytest.raises(ValueError, match="nid|node"):
        list_lru_count_node(lru, 2)


# ---------------------------------------------------------------- walks


@pytest.fixture
def abcd(lru):
    for name in "abcd":
        list_lru_add(lru, (0, name))
    return [(0, n) for n in "abcd"]


def test_walk_starts_at_the_head(lru, abcd):
    visits, isolated, left = _walk(lru, 0, lambda it, n: LRU_SKIP)
    assert visits == abcd
    assert isolated == 0
    assert left == 100 - 4
    assert _items(lru) == abcd


def test_walk_respects_nr_to_walk(lru, abcd):
    visits, isolated, left = _walk(lru, 0, lambda it, n: LRU_REMOVED, nr_to_walk=2)
    assert visits == abcd[:2]
    assert isolated == 2
    assert left == 0
    assert _items(lru) == abcd[2:]
    assert list_lru_count_node(lru, 0) == 2


def test_lru_removed(lru, abcd):
    visits, isolated, _ = _walk(lru, 0, lambda it, n: LRU_REMOVED if it[1] in "bd" else LRU_SKIP)
    assert visits == abcd
    assert isolated == 2
    assert _items(lru) == [abcd[0], abcd[2]]
    assert lru.node[0].lru.nr_items == 2
    assert list_lru_count_node(lru, 0) == 2       # the walker drops the node total


def test_lru_removed_retry_restarts_from_the_head(lru, abcd):
    def policy(item, n):
        return LRU_REMOVED_RETRY if item[1] == "b" else LRU_SKIP

    visits, isolated, left = _walk(lru, 0, policy)
    # a, b (removed, lock dropped) → restart: a again, then c, d
    assert visits == [abcd[0], abcd[1], abcd[0], abcd[2], abcd[3]]
    assert isolated == 1
    assert left == 100 - 5
    assert _items(lru) == [abcd[0], abcd[2], abcd[3]]
    assert list_lru_count_node(lru, 0) == 3


def test_lru_rotate_moves_to_the_tail_and_revisits(lru, abcd):
    visits, isolated, left = _walk(lru, 0, lambda it, n: LRU_ROTATE, nr_to_walk=6)
    # every item gets a second chance at the tail; budget bounds the walk
    assert visits == abcd + abcd[:2]
    assert isolated == 0
    assert left == 0
    assert _items(lru) == [abcd[2], abcd[3], abcd[0], abcd[1]]
    assert list_lru_count_node(lru, 0) == 4


def test_lru_rotate_single_item(lru, abcd):
    visits, _, _ = _walk(lru, 0, lambda it, n: LRU_ROTATE if it[1] == "a" else LRU_SKIP,
                         nr_to_walk=4)
    assert visits == abcd
    assert _items(lru) == [abcd[1], abcd[2], abcd[3], abcd[0]]


def test_lru_skip_leaves_item_in_place(lru, abcd):
    visits, isolated, _ = _walk(lru, 0, lambda it, n: LRU_SKIP if it[1] == "a" else LRU_REMOVED)
    assert visits == abcd
    assert isolated == 3
    assert _items(lru) == [abcd[0]]


def test_lru_retry_restarts_without_removing(lru, abcd):
    def policy(item, n):
        return LRU_RETRY if item[1] == "b" and n == 1 else LRU_SKIP

    visits, isolated, left = _walk(lru, 0, policy)
    assert visits == [abcd[0], abcd[1], abcd[0], abcd[1], abcd[2], abcd[3]]
    assert isolated == 0
    assert left == 100 - 6            # every visit costs budget, restarts included
    assert _items(lru) == abcd


def test_isolate_move_to_a_private_list(lru, abcd):
    dispose = []

    def isolate(item, lst, arg):
        list_lru_isolate_move(lst, item, arg)
        return LRU_REMOVED

    sc = shrink_control(gfp_mask=0xCC0, nid=0, nr_to_scan=3)
    isolated = list_lru_shrink_walk(lru, sc, isolate, dispose)
    assert isolated == 3
    assert dispose == abcd[:3]              # oldest first
    assert sc.nr_to_scan == 0               # budget spent
    assert _items(lru) == abcd[3:]
    assert list_lru_count_node(lru, 0) == 1
    assert lru.node[0].lru.nr_items == 1


def test_walk_only_touches_its_node(lru, abcd):
    list_lru_add(lru, (1, "other"))
    visits, isolated, _ = _walk(lru, 0, lambda it, n: LRU_REMOVED)
    assert (1, "other") not in visits
    assert isolated == 4
    assert list_lru_count_node(lru, 1) == 1


def test_walk_all_nodes_until_budget(lru):
    for i in range(3):
        list_lru_add(lru, (0, i))
        list_lru_add(lru, (1, i))
    seen = []

    def isolate(item, lst, arg):
        seen.append(item)
        list_lru_isolate(lst, item)
        return LRU_REMOVED

    assert list_lru_walk(lru, isolate, None, 4) == 4
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert list_lru_count(lru) == 2


def test_bad_isolate_result_refused(lru, abcd):
    with pytest.raises(ValueError):
        list_lru_walk_one(lru, 0, None, lambda it, lst, arg: None, None, 10)


# ---------------------------------------------------------------- memcg-aware lists


@pytest.fixture
def mlru(k):
    return list_lru_init_memcg(k, nid_of, memcg_of, name="memcg")


def test_memcg_aware_lists(mlru):
    assert list_lru_memcg_aware(mlru)
    list_lru_add(mlru, (0, "root"))
    list_lru_add(mlru, (0, "a1", "A"))
    list_lru_add(mlru, (0, "a2", "A"))
    list_lru_add(mlru, (0, "b1", "B"))
    list_lru_add(mlru, (1, "a3", "A"))
    assert list_lru_count_one(mlru, 0, None) == 1
    assert list_lru_count_one(mlru, 0, "A") == 2
    assert list_lru_count_one(mlru, 0, "B") == 1
    assert list_lru_count_one(mlru, 0, "C") == 0
    assert list_lru_count_one(mlru, 1, "A") == 1
    assert list_lru_count_node(mlru, 0) == 4        # node total across memcgs
    assert list_lru_count(mlru) == 5
    assert list_lru_add(mlru, (0, "a1", "A")) is False
    assert list_lru_del(mlru, (0, "a1", "A")) is True
    assert list_lru_count_one(mlru, 0, "A") == 1
    assert list_lru_count_node(mlru, 0) == 3
    sc = shrink_control(gfp_mask=0xCC0, nid=0, memcg="B")
    assert list_lru_shrink_count(mlru, sc) == 1


def test_memcg_walk_one_visits_only_that_memcg(mlru):
    list_lru_add(mlru, (0, "root"))
    list_lru_add(mlru, (0, "a1", "A"))
    list_lru_add(mlru, (0, "b1", "B"))
    visits, isolated, _ = _walk(mlru, 0, lambda it, n: LRU_REMOVED, memcg="A")
    assert visits == [(0, "a1", "A")]
    assert isolated == 1
    assert list_lru_count_one(mlru, 0, "A") == 0
    assert list_lru_count_node(mlru, 0) == 2


def test_memcg_walk_node_visits_root_then_memcgs(mlru):
    list_lru_add(mlru, (0, "a1", "A"))
    list_lru_add(mlru, (0, "root"))
    list_lru_add(mlru, (0, "b1", "B"))
    seen = []

    def isolate(item, lst, arg):
        seen.append(item)
        return LRU_SKIP

    isolated, left = list_lru_walk_node(mlru, 0, isolate, None, 10)
    assert seen[0] == (0, "root")
    assert sorted(seen[1:]) == [(0, "a1", "A"), (0, "b1", "B")]
    assert isolated == 0 and left == 7


def test_non_memcg_lru_ignores_memcg(lru):
    list_lru_add(lru, (0, "a", "A"))
    assert not list_lru_memcg_aware(lru)
    assert list_lru_count_one(lru, 0, None) == 1
    assert list_lru_count_one(lru, 0, "A") == 1   # not memcg aware: the node's list


# ---------------------------------------------------------------- RFC 1/3: list_lru_get_mru


def test_get_mru_returns_the_most_recently_added(lru, abcd):
    assert list_lru_get_mru(lru, 0) == abcd[3]
    assert list_lru_get_mru(lru, 0) == abcd[2]
    assert list_lru_count_node(lru, 0) == 2
    assert lru.node[0].lru.nr_items == 2
    list_lru_add(lru, (0, "e"))
    assert list_lru_get_mru(lru, 0) == (0, "e")
    # LIFO stack: a re-added item comes out first
    list_lru_add(lru, abcd[3])
    assert list_lru_get_mru(lru, 0) == abcd[3]
    assert _items(lru) == abcd[:2]


def test_get_mru_removed_item_can_be_added_again(lru, abcd):
    item = list_lru_get_mru(lru, 0)
    assert list_lru_del(lru, item) is False       # list_del_init: no longer queued
    assert list_lru_add(lru, item) is True


def test_get_mru_never_touches_other_nodes(lru):
    list_lru_add(lru, (1, "x"))
    list_lru_add(lru, (1, "y"))
    assert list_lru_get_mru(lru, 0) is None        # node 0 empty: no fallback
    assert list_lru_count_node(lru, 1) == 2
    list_lru_add(lru, (0, "z"))
    assert list_lru_get_mru(lru, 0) == (0, "z")
    assert list_lru_count_node(lru, 1) == 2
    assert list_lru_get_mru(lru, 1) == (1, "y")
    assert list_lru_count_node(lru, 0) == 0


def test_get_mru_empty_node_returns_none(lru, k):
    assert list_lru_get_mru(lru, 0) is None
    assert list_lru_get_mru(lru, 1) is None
    assert list_lru_count(lru) == 0
    assert k.warnings == []


def test_get_mru_refuses_memcg_aware_with_one_warning(mlru, k):
    list_lru_add(mlru, (0, "root"))
    list_lru_add(mlru, (0, "a", "A"))
    assert list_lru_get_mru(mlru, 0) is None
    assert list_lru_get_mru(mlru, 0) is None
    assert list_lru_get_mru(mlru, 1) is None
    warns = [w for w in k.warnings if "list_lru_get_mru" in w]
    assert len(warns) == 1                         # WARN_ONCE
    assert "memcg aware" in warns[0]
    assert len(k.warnings) == 1
    assert list_lru_count_node(mlru, 0) == 2       # nothing was removed


def test_get_mru_needs_patch_1():
    k = Machine(nodes=2, patches=()).k
    lru = list_lru_init(k, nid_of)
    list_lru_add(lru, (0, "a"))
    with pytest.raises(RuntimeError):
        list_lru_get_mru(lru, 0)
    assert list_lru_count(lru) == 1


def test_walk_head_and_get_mru_tail_meet(lru, abcd):
    # the cache is a LIFO at the tail while the shrinker eats from the head (spec §1.2)
    visits, _, _ = _walk(lru, 0, lambda it, n: LRU_REMOVED, nr_to_walk=1)
    assert visits == [abcd[0]]
    assert list_lru_get_mru(lru, 0) == abcd[3]
    assert _items(lru) == abcd[1:3]

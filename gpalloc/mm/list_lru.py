"""list_lru (include/linux/list_lru.h, mm/list_lru.c, v5.11) and RFC 1/3's list_lru_get_mru().

A list_lru keeps one list per NUMA node (plus one per memcg when memcg aware).
``list_lru_add`` appends at the tail and derives the node from the item's own
address (``page_to_nid(virt_to_page(item))``) — the reason RFC 2/3 keeps its
list_head *inside* the cached page.  Walks start at the head (oldest item).
Each list is an OrderedDict used as an ordered set: first key = head, last = tail.
"""

from collections import OrderedDict
from enum import Enum

from ..bug import WARN_ONCE


class lru_status(Enum):
    """enum lru_status: what an isolate callback did with the item."""

    LRU_REMOVED = 0
    LRU_REMOVED_RETRY = 1
    LRU_ROTATE = 2
    LRU_SKIP = 3
    LRU_RETRY = 4


LRU_REMOVED = lru_status.LRU_REMOVED
LRU_REMOVED_RETRY = lru_status.LRU_REMOVED_RETRY
LRU_ROTATE = lru_status.LRU_ROTATE
LRU_SKIP = lru_status.LRU_SKIP
LRU_RETRY = lru_status.LRU_RETRY


class list_lru_one:
    """struct list_lru_one: a list and its item count."""

    __slots__ = ("list", "nr_items")

    def __init__(self):
        self.list = OrderedDict()
        self.nr_items = 0


class list_lru_node:
    """struct list_lru_node: the node's non-memcg list, memcg lists, and node total."""

    __slots__ = ("lru", "memcg_lrus", "nr_items")

    def __init__(self):
        self.lru = list_lru_one()
        self.memcg_lrus = {}
        self.nr_items = 0


class list_lru:
    """struct list_lru: one list_lru_node per NUMA node.

    ``nid_of(item)`` models ``page_to_nid(virt_to_page(item))``; ``memcg_of(item)``
    models ``mem_cgroup_from_obj`` (None = root) for memcg-aware lrus.
    """

    def __init__(self, k, nid_of, memcg_aware=False, memcg_of=None, name="list_lru"):
        self.k, self.name = k, name
        self.node = [list_lru_node() for _ in range(k.nr_nodes)]
        self.memcg_aware = memcg_aware
        self.nid_of = nid_of
        self.memcg_of = memcg_of or (lambda item: None)

    def __repr__(self):
        counts = [n.nr_items for n in self.node]
        return f"<list_lru {self.name} per-node={counts}>"


def list_lru_init(k, nid_of, name="list_lru"):
    """list_lru_init(): a list_lru that is not memcg aware."""
    return list_lru(k, nid_of, memcg_aware=False, name=name)


def list_lru_init_memcg(k, nid_of, memcg_of, name="list_lru"):
    """list_lru_init_memcg(): a memcg-aware list_lru."""
    return list_lru(k, nid_of, memcg_aware=True, memcg_of=memcg_of, name=name)


def list_lru_memcg_aware(lru):
    """list_lru_memcg_aware()."""
    return lru.memcg_aware


def list_lru_from_memcg_idx(nlru, memcg):
    """The list an item of this memcg lives on (root → the node's own list)."""
    if memcg is None:
        return nlru.lru
    lst = nlru.memcg_lrus.get(memcg)
    if lst is None:
        lst = nlru.memcg_lrus[memcg] = list_lru_one()
    return lst


def _check_nid(lru, nid):
    if not isinstance(nid, int) or not 0 <= nid < len(lru.node):
        raise ValueError(f"nid: node {nid!r} does not exist (nodes 0..{len(lru.node) - 1})")


def _on_any_list(nlru, item):
    return item in nlru.lru.list or any(item in lst.list for lst in nlru.memcg_lrus.values())


def list_lru_add_node(lru, item, nid):
    """Add with an explicit node (PKS RFC's list_lru_add_node; upstream 6.8 list_lru_add)."""
    _check_nid(lru, nid)
    nlru = lru.node[nid]
    if _on_any_list(nlru, item):
        return False
    memcg = lru.memcg_of(item) if lru.memcg_aware else None
    lst = list_lru_from_memcg_idx(nlru, memcg)
    lst.list[item] = None
    lst.nr_items += 1
    nlru.nr_items += 1
    return True


def list_lru_add(lru, item):
    """list_lru_add(): append at the tail of the item's node list; False if already queued."""
    return list_lru_add_node(lru, item, lru.nid_of(item))


def list_lru_del_node(lru, item, nid):
    """Remove with an explicit node; False if the item was on no list."""
    _check_nid(lru, nid)
    nlru = lru.node[nid]
    for lst in (nlru.lru, *nlru.memcg_lrus.values()):
        if item in lst.list:
            del lst.list[item]
            lst.nr_items -= 1
            nlru.nr_items -= 1
            return True
    return False


def list_lru_del(lru, item):
    """list_lru_del(): unlink the item from its node's list; False if it was on none."""
    return list_lru_del_node(lru, item, lru.nid_of(item))


def list_lru_get_mru(lru, nid):
    """list_lru_get_mru() — RFC 1/3: remove and return the tail (most recently added) item.

    Looks only at node ``nid``'s non-memcg list; returns None when it is empty.  A
    memcg-aware lru is refused with a one-time warning and None, as in the patch.
    """
    k = lru.k
    if not k.design.provides("list_lru_get_mru"):
        raise RuntimeError(f"list_lru_get_mru: not in this kernel (design {k.design.name!r}); "
                           "RFC patch 1 adds it: build the machine with patches=(1,) or more")
    _check_nid(lru, nid)
    if list_lru_memcg_aware(lru):
        WARN_ONCE(k, "list_lru_get_mru",
                  "list_lru: list_lru_get_mru not supported on memcg aware list_lrus")
        return None
    nlru = lru.node[nid]
    lst = nlru.lru
    if not lst.list:
        return None
    item, _ = lst.list.popitem(last=True)
    lst.nr_items -= 1
    nlru.nr_items -= 1
    return item


def list_lru_isolate(lst, item):
    """list_lru_isolate(): inside a walk, unlink the item (list count only)."""
    del lst.list[item]
    lst.nr_items -= 1


def list_lru_isolate_move(lst, item, head):
    """list_lru_isolate_move(): inside a walk, move the item onto a private list."""
    list_lru_isolate(lst, item)
    head.append(item)


def list_lru_count_one(lru, nid, memcg=None):
    """list_lru_count_one(): items on one node's list for one memcg (root: non-memcg list)."""
    _check_nid(lru, nid)
    nlru = lru.node[nid]
    if memcg is None or not lru.memcg_aware:
        return nlru.lru.nr_items
    lst = nlru.memcg_lrus.get(memcg)
    return lst.nr_items if lst else 0


def list_lru_shrink_count(lru, sc):
    """list_lru_shrink_count(): count_one(sc->nid, sc->memcg)."""
    return list_lru_count_one(lru, sc.nid, sc.memcg)


def list_lru_count_node(lru, nid):
    """list_lru_count_node(): the node's total across memcgs."""
    _check_nid(lru, nid)
    return lru.node[nid].nr_items


def list_lru_count(lru):
    """list_lru_count(): all nodes."""
    return sum(n.nr_items for n in lru.node)


def list_lru_walk_one(lru, nid, memcg, isolate, cb_arg, nr_to_walk):
    """list_lru_walk_one(): walk from the head calling isolate(item, list, cb_arg).

    Returns ``(isolated, nr_to_walk_left)``: Python has no pointer to decrement.
    """
    _check_nid(lru, nid)
    nlru = lru.node[nid]
    lst = list_lru_from_memcg_idx(nlru, memcg if lru.memcg_aware else None)
    isolated = 0
    pending = list(lst.list)
    i = 0
    while i < len(pending):
        item = pending[i]
        i += 1
        if item not in lst.list:
            continue
        if nr_to_walk <= 0:
            break
        nr_to_walk -= 1
        ret = isolate(item, lst, cb_arg)
        if ret in (LRU_REMOVED, LRU_REMOVED_RETRY):
            isolated += 1
            nlru.nr_items -= 1
            if ret is LRU_REMOVED_RETRY:
                pending, i = list(lst.list), 0
        elif ret is LRU_ROTATE:
            lst.list.move_to_end(item)
            pending.append(item)
        elif ret is LRU_RETRY:
            pending, i = list(lst.list), 0
        elif ret is not LRU_SKIP:
            raise ValueError(f"isolate callback returned {ret!r}, not an lru_status")
    return isolated, nr_to_walk


def list_lru_shrink_walk(lru, sc, isolate, cb_arg):
    """list_lru_shrink_walk(): walk node sc.nid, spending sc.nr_to_scan."""
    isolated, sc.nr_to_scan = list_lru_walk_one(lru, sc.nid, sc.memcg, isolate, cb_arg,
                                                sc.nr_to_scan)
    return isolated


def list_lru_walk_node(lru, nid, isolate, cb_arg, nr_to_walk):
    """list_lru_walk_node(): the non-memcg list, then each memcg list, while budget remains."""
    isolated, nr_to_walk = list_lru_walk_one(lru, nid, None, isolate, cb_arg, nr_to_walk)
    if lru.memcg_aware:
        for memcg in list(lru.node[nid].memcg_lrus):
            if nr_to_walk <= 0:
                break
            n, nr_to_walk = list_lru_walk_one(lru, nid, memcg, isolate, cb_arg, nr_to_walk)
            isolated += n
    return isolated, nr_to_walk


def list_lru_walk(lru, isolate, cb_arg, nr_to_walk):
    """list_lru_walk(): every node until the budget runs out."""
    isolated = 0
    for nid in range(len(lru.node)):
        n, nr_to_walk = list_lru_walk_node(lru, nid, isolate, cb_arg, nr_to_walk)
        isolated += n
        if nr_to_walk <= 0:
            break
    return isolated

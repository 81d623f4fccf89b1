"""The lean inventory's list-and-watch (operator/informer.py) against scripted API answers: pages,
bookmarks, deletions, a watch closed by the server, 410 Gone (list again and take out what is gone),
an expired continue token, and a connection that breaks mid-burst (watch again from the last version)."""

from __future__ import annotations

import threading

import pytest

from rackfit.operator import kube
from rackfit.operator.informer import Informer


def pod(uid: str, version: str, node: str = "n0") -> dict:
    return {"metadata": {"uid": uid, "resourceVersion": version}, "spec": {"nodeName": node}}


class Api:
    """Scripted list pages and watch streams; records what the informer asked for."""

    def __init__(self, lists: list, watches: list):
        self.lists, self.watches, self.asked = list(lists), list(watches), []

    def list_page(self, kind, cont=None, **_):
        self.asked.append(("list", cont))
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watch_events(self, kind, version, **_):
        self.asked.append(("watch", version))
        script = self.watches.pop(0) if self.watches else []
        for step in script:
            if isinstance(step, Exception):
                raise step
            yield step


def informer(api: Api, state: dict) -> Informer:
    def apply(key, obj):
        if obj is None:
            state.pop(key, None)
        else:
            state[key] = obj["spec"]["nodeName"]
    return Informer("pods", apply, lambda o: o["metadata"]["uid"], list_page=api.list_page,
                    watch_events=api.watch_events, backoff=(0,))


def test_a_list_in_pages_then_the_watch_from_its_version_with_bookmarks_and_deletions():
    api = Api([([pod("a", "1")], "c1", "5"), ([pod("b", "2")], None, "6")],
              [[{"type": "ADDED", "object": pod("c", "7")}, {"type": "BOOKMARK", "object": {"metadata": {
                  "resourceVersion": "9"}}}, {"type": "DELETED", "object": pod("a", "10")},
                {"type": "MODIFIED", "object": pod("b", "11", node="n1")}]])
    state: dict = {}
    inf = informer(api, state)
    assert inf.relist() == 2 and inf.resource_version == "6"
    assert api.asked == [("list", None), ("list", "c1")]
    inf.watch_once()
    assert state == {"b": "n1", "c": "n0"} and inf.known == {"b", "c"} and inf.resource_version == "11"


def test_410_gone_lists_again_and_takes_out_what_the_new_list_lacks():
    api = Api([([pod("a", "1"), pod("b", "2")], None, "5"), ([pod("b", "2"), pod("d", "20")], None, "21")],
              [[kube.Gone("too old")], []])
    state: dict = {}
    inf = informer(api, state)
    inf.relist()
    stop = threading.Event()
    watched = []

    def watch_events(kind, version, **kw):
        watched.append(version)
        if len(watched) == 2:
            stop.set()
        yield from Api.watch_events(api, kind, version, **kw)
    inf._watch_events = watch_events
    inf.run(stop)
    assert state == {"b": "n0", "d": "n0"}  # a was deleted while the watch was gone: taken out
    assert inf.lists == 2 and watched == ["5", "21"]


def test_a_broken_watch_is_taken_up_again_from_the_last_version_seen():
    api = Api([([pod("a", "1")], None, "5")],
              [[{"type": "ADDED", "object": pod("b", "6")}, ConnectionError("reset mid-burst")],
               [{"type": "ADDED", "object": pod("c", "7")}]])
    state: dict = {}
    inf = informer(api, state)
    inf.relist()
    stop = threading.Event()
    original = inf.watch_once

    def once():
        original()
        if "c" in state:
            stop.set()
    inf.watch_once = once
    inf.run(stop)
    assert [v for what, v in api.asked if what == "watch"] == ["5", "6"]  # no relist, no event lost
    assert state == {"a": "n0", "b": "n0", "c": "n0"} and inf.lists == 1


def test_an_expired_continue_token_starts_the_list_again():
    api = Api([([pod("a", "1")], "c1", "5"), kube.Gone("continue expired"), ([pod("a", "1")], "c2", "8"),
               ([pod("b", "2")], None, "8")], [])
    state: dict = {}
    assert informer(api, state).relist() == 2
    assert [c for what, c in api.asked if what == "list"] == [None, "c1", None, "c2"]


@pytest.mark.parametrize("event_type", ["ADDED", "MODIFIED"])
def test_objects_are_not_kept_only_their_keys(event_type):
    api = Api([([], None, "1")], [[{"type": event_type, "object": pod("a", "2")}]])
    inf = informer(api, {})
    inf.relist()
    inf.watch_once()
    kept = [v for k, v in vars(inf).items() if isinstance(v, dict | list) and k != "selectors"]
    assert inf.known == {"a"} and not kept

"""The lean inventory: GPU nodes and unfinished pods read through a plain list-and-watch, keeping only
what the ledger needs (a node's GPUs, labels and schedulability; a pod's GPUs, node and workload
label). kopf keeps per-object state (a worker, a body, a logger) for every object it watches, about
45 KB a pod; here nothing is kept per object but its key.

The protocol is client-go's reflector (k8s.io/client-go/tools/cache/reflector.go): list in pages,
then watch from the list's resourceVersion with bookmarks (so an idle watch's version stays fresh);
when the server closes the watch, watch again from the last version seen; on 410 Gone (the version
was compacted away) list again, and take out what the new list no longer has. A watch that breaks
mid-burst is taken up again from its last version after a backoff, so no event is lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rackfit.operator import kube

log = logging.getLogger(__name__)

Apply = Callable[[str, dict[str, Any] | None], None]  # (key, object or None when gone)


class Informer:
    def __init__(self, kind: str, apply: Apply, key: Callable[[dict[str, Any]], str], *, label_selector: str = "",
                 field_selector: str = "", list_page: Callable[..., tuple] = kube.list_page,
                 watch_events: Callable[..., Iterator[dict]] = kube.watch_events,
                 backoff: tuple[float, ...] = (1, 2, 5, 10, 30)) -> None:
        self.kind, self.apply, self.key = kind, apply, key
        self.selectors = {"label_selector": label_selector, "field_selector": field_selector}
        self._list_page, self._watch_events, self.backoff = list_page, watch_events, backoff
        self.known: set[str] = set()
        self.resource_version = ""
        self.lists = 0  # how many times it listed (the first, and one per 410 Gone)

    def relist(self) -> int:
        """List every object (in pages), apply each, and take out those no longer there. Returns how many."""
        seen: set[str] = set()
        cont: str | None = None
        while True:
            try:
                items, cont, version = self._list_page(self.kind, cont=cont, **self.selectors)
            except kube.Gone:  # the continue token expired mid-list: start the list again
                seen, cont = set(), None
                continue
            for obj in items:
                key = self.key(obj)
                seen.add(key)
                self.apply(key, obj)
            if not cont:
                break
        for key in self.known - seen:
            self.apply(key, None)
        self.known, self.resource_version = seen, version
        self.lists += 1
        return len(seen)

    def watch_once(self) -> None:
        """Apply the watch's events until the server closes it."""
        for event in self._watch_events(self.kind, self.resource_version, **self.selectors):
            obj = event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if event.get("type") != "BOOKMARK":
                key = self.key(obj)
                if event.get("type") == "DELETED":
                    self.known.discard(key)
                    self.apply(key, None)
                else:
                    self.known.add(key)
                    self.apply(key, obj)
            if version:
                self.resource_version = version

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop`, listing again when needed (call `relist` first)."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                self.watch_once()
                failures = 0
            except kube.Gone:
                log.info(f"{self.kind}: watch version too old (410 Gone): listing again")
                self.resource_version = ""
            except Exception as e:  # a broken connection, a 5xx: watch again from the last version seen
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                log.warning(f"{self.kind}: watch failed ({e}); again in {delay:g}s from version "
                            f"{self.resource_version or '(a new list)'}")
                stop.wait(delay)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name=f"informer-{self.kind}", daemon=True)
        thread.start()
        return thread

"""The one module that calls the Kubernetes API with the official client: targets, pods, ConfigMaps.
(kopf itself watches LLMWorkloads, Nodes and Pods and writes status and Events.)"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import kubernetes
import kubernetes.watch
from kubernetes.client.rest import ApiException

from rackfit.names import GROUP, PLURAL, VERSION
from rackfit.operator.targets import TargetKind

MERGE_PATCH = "application/merge-patch+json"
# 409: the target changed since it was read (its patches carry the resourceVersion read): read it again
TRANSIENT = {409, 429, 500, 502, 503, 504}


class TransientError(Exception):
    """An API error worth retrying with backoff (kopf.TemporaryError at the handler)."""


class Conflict(TransientError):
    """409: the object changed since it was read (a patch with its resourceVersion)."""


@cache
def _client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def _call(fn, *args, _allow: int | None = None, **kwargs) -> Any:
    """`fn(...)`; an error worth retrying raised as TransientError, one of status `_allow` ignored (None)."""
    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        if e.status == _allow:
            return None
        if e.status == 409:
            raise Conflict(f"{e.status} {e.reason}") from e
        if e.status in TRANSIENT:
            raise TransientError(f"{e.status} {e.reason}") from e
        raise


def _read(fn, name: str, namespace: str) -> dict[str, Any] | None:
    """The object as the API serves it (camelCase dict, like kopf's bodies), or None when absent."""
    try:
        resp = _call(fn, name, namespace, _preload_content=False)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return json.loads(resp.data)


def _api(cls: str):
    return getattr(kubernetes.client, cls)(_client())


def get_target(kind: TargetKind, namespace: str, name: str) -> dict[str, Any] | None:
    """The target as the API serves it; None when it (or its CRD) is absent. Every kind through the
    custom-objects client: built-in kinds of named groups (apps, batch) have the same paths."""
    api = _api("CustomObjectsApi")
    return _read(lambda n, ns, **kw: api.get_namespaced_custom_object(kind.group, kind.version, ns, kind.plural, n,
                                                                       **kw), name, namespace)


def patch_target(kind: TargetKind, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386), for built-in kinds and custom resources alike (targets.patches builds them)."""
    _call(_api("CustomObjectsApi").patch_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural,
          name, patch, _content_type=MERGE_PATCH)


def read_hf_config(namespace: str, configmap: str) -> dict[str, Any] | None:
    """`config.json` of a ConfigMap, parsed; None if the ConfigMap or the key is missing."""
    cm = _read(_api("CoreV1Api").read_namespaced_config_map, configmap, namespace)
    raw = ((cm or {}).get("data") or {}).get("config.json")
    return json.loads(raw) if raw else None


def patch_pod(namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """Strategic-merge patch a pod; False when it is gone (404) or no longer takes the patch (422: a
    pod that left its gate since it was indexed has an immutable node selector)."""
    try:
        _call(_api("CoreV1Api").patch_namespaced_pod, name, namespace, patch)
    except ApiException as e:
        if e.status in (404, 422):
            return False
        raise
    return True


def delete_pod(namespace: str, name: str, uid: str | None = None) -> None:
    """Delete a pod; with `uid`, only that pod (not one made again under its name)."""
    body = kubernetes.client.V1DeleteOptions(preconditions=kubernetes.client.V1Preconditions(uid=uid)) if uid else None
    try:
        _call(_api("CoreV1Api").delete_namespaced_pod, name, namespace, body=body)
    except ApiException as e:
        if e.status != 404:
            raise


def patch_status(namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None) -> bool:
    """Merge-patch an LLMWorkload's status now (kopf writes the rest after the handler); with
    `resource_version`, as `patch_namespaced_status`."""
    return patch_namespaced_status((GROUP, VERSION, PLURAL), namespace, name, {"status": status}, resource_version)


# --- the uninstall hook (rackfit.operator.release) ---------------------------------------------
def list_workloads() -> list[dict[str, Any]]:
    """Every LLMWorkload in the cluster."""
    return _call(_api("CustomObjectsApi").list_cluster_custom_object, GROUP, VERSION, PLURAL)["items"]


def set_finalizers(namespace: str, name: str, finalizers: list[str], resource_version: str) -> None:
    """Replace an LLMWorkload's finalizers, if it is still at `resource_version` (409 otherwise)."""
    _call(_api("CustomObjectsApi").patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
          {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
          _content_type=MERGE_PATCH)


def scale_deployment(namespace: str, name: str, replicas: int) -> None:
    _call(_api("AppsV1Api").patch_namespaced_deployment, name, namespace, {"spec": {"replicas": replicas}})


def pod_names(namespace: str, label_selector: str) -> list[str]:
    return [p.metadata.name for p in _call(_api("CoreV1Api").list_namespaced_pod, namespace,
                                           label_selector=label_selector).items]


# --- objects rackfit owns beside the target (ComputeDomains: computedomains.py) -------------------
def serves(group: str, version: str, plural: str) -> bool:
    """Whether the API server serves the resource (API discovery; False when the group is absent)."""
    resources = _call(_api("CustomObjectsApi").get_api_resources, group, version, _preload_content=False,
                      _allow=404)
    served = json.loads(resources.data).get("resources") or [] if resources is not None else []
    return any(r.get("name") == plural for r in served)


def list_names(api: tuple[str, str, str], namespace: str, label_selector: str) -> list[str]:
    items = _call(_api("CustomObjectsApi").list_namespaced_custom_object, *api[:2], namespace, api[2],
                  label_selector=label_selector)["items"]
    return [o["metadata"]["name"] for o in items if not o["metadata"].get("deletionTimestamp")]


def create_object(api: tuple[str, str, str], namespace: str, body: dict[str, Any]) -> None:
    """Create a namespaced custom object; one of that name already there is left as it is."""
    _call(_api("CustomObjectsApi").create_namespaced_custom_object, *api[:2], namespace, api[2], body, _allow=409)


def delete_object(api: tuple[str, str, str], namespace: str, name: str) -> None:
    _call(_api("CustomObjectsApi").delete_namespaced_custom_object, *api[:2], namespace, api[2], name, _allow=404)


# --- Kueue (kueue.py): its Workloads' admission checks, AdmissionChecks, ResourceFlavors --------------
def get_cluster_object(api: tuple[str, str, str], name: str) -> dict[str, Any] | None:
    co = _api("CustomObjectsApi")
    return _read(lambda n, _ns, **kw: co.get_cluster_custom_object(*api, n, **kw), name, "")


def list_cluster_objects(api: tuple[str, str, str]) -> list[dict[str, Any]]:
    """The cluster-scoped custom objects of a kind ([] where its CRD is not served)."""
    out = _call(_api("CustomObjectsApi").list_cluster_custom_object, *api, _allow=404)
    return out["items"] if out else []


def patch_cluster_status(api: tuple[str, str, str], name: str, patch: dict[str, Any]) -> None:
    _call(_api("CustomObjectsApi").patch_cluster_custom_object_status, *api, name, patch,
          _content_type=MERGE_PATCH)


def patch_namespaced_status(api: tuple[str, str, str], namespace: str, name: str, patch: dict[str, Any],
                            resource_version: str | None = None) -> bool:
    """Merge-patch a custom object's status; with `resource_version`, only if the object is still that
    version: False when it changed since (409)."""
    if resource_version:
        patch = {**patch, "metadata": {"resourceVersion": resource_version}}
    try:
        _call(_api("CustomObjectsApi").patch_namespaced_custom_object_status, *api[:2], namespace, api[2], name,
              patch, _content_type=MERGE_PATCH)
    except Conflict:
        if resource_version is None:
            raise
        return False
    return True


def list_objects(api: tuple[str, str, str], namespace: str) -> list[dict[str, Any]]:
    """The namespaced custom objects of a kind ([] where its CRD is not served)."""
    out = _call(_api("CustomObjectsApi").list_namespaced_custom_object, *api[:2], namespace, api[2], _allow=404)
    return out["items"] if out else []


def list_namespaced_workloads(namespace: str) -> list[dict[str, Any]]:
    """The LLMWorkloads of a namespace."""
    return _call(_api("CustomObjectsApi").list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)["items"]


# --- list and watch for the lean inventory (informer.py) ------------------------------------------
class Gone(Exception):
    """410: the resourceVersion is older than the API server keeps; list again."""


_LISTS = {"pods": "list_pod_for_all_namespaces", "nodes": "list_node"}


def list_page(kind: str, *, label_selector: str = "", field_selector: str = "", limit: int = 500,
              cont: str | None = None) -> tuple[list[dict[str, Any]], str | None, str]:
    """One page of nodes or pods as raw dicts: (items, continue token, the list's resourceVersion)."""
    fn = getattr(_api("CoreV1Api"), _LISTS[kind])
    kw: dict[str, Any] = {"limit": limit, "label_selector": label_selector, "field_selector": field_selector}
    if cont:
        kw["_continue"] = cont
    try:
        resp = _call(fn, _preload_content=False, **kw)
    except ApiException as e:
        if e.status == 410:  # the continue token expired
            raise Gone(str(e.reason)) from e
        raise
    data = json.loads(resp.data)
    meta = data.get("metadata") or {}
    return data.get("items") or [], meta.get("continue") or None, meta.get("resourceVersion", "")


def watch_events(kind: str, resource_version: str, *, label_selector: str = "", field_selector: str = "",
                 timeout_seconds: int = 300):
    """The watch's events from `resource_version` as raw dicts ({"type", "object"}), bookmarks included;
    ends when the server closes it (timeout); `Gone` when the version is too old."""
    fn = getattr(_api("CoreV1Api"), _LISTS[kind])
    resp = _call(fn, watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
                 label_selector=label_selector, field_selector=field_selector, timeout_seconds=timeout_seconds,
                 _preload_content=False)
    try:
        for line in kubernetes.watch.watch.iter_resp_lines(resp):
            event = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                if status.get("code") == 410:
                    raise Gone(status.get("message", "410 Gone"))
                raise TransientError(f"watch error: {status.get('message')}")
            yield event
    finally:
        resp.release_conn()

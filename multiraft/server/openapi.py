"""The OpenAPI 3 document of the admin API (served at `/openapi.json`; a test checks that every
route of the app is described here and that the document is valid)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERR = _ref("Error")
_REGION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "Region id.",
    "schema": {"type": "integer", "minimum": 1},
}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad input: invalid JSON, wrong types, unknown role, or a change that can never "
        "succeed (e.g. the store already has a replica).",
        401: "The admin token is set and the request did not carry it.",
        404: "No such region (or store) on this store.",
        409: "Conflicts with the region's epoch or with a change in progress; for a merge "
        "also: not adjacent, not on the same stores, or rolled back; for a store removal: "
        "the store is not down, or a region here still has a replica on it.",
        503: "No leader known (the `leader` hint may help), forwarding failed, or stopping.",
        504: "Accepted but not applied in time; check the region. For a new voter "
        "(CATCH_UP_TIMEOUT): its learner did not catch up in time and stays a learner.",
    }
    return {str(c): _json(_ERR, text[c]) for c in codes}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "multiraft store admin API",
        "version": "1.0.0",
        "description": "Metrics, status and region administration of one multiraft store. "
        "Mutating calls asked of a follower are forwarded to the region leader's store "
        "(one hop). Keys are hex-encoded.",
    },
    "paths": {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format).",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness: 200 while the store serves.",
                "operationId": "health",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": ["ok"]},
                                "store_id": {"type": "integer"},
                            },
                            "required": ["status", "store_id"],
                        },
                        "Serving.",
                    ),
                    **_errors(503),
                },
            }
        },
        "/status": {
            "get": {
                "summary": "The store: ids, counts, addresses, uptime, and every store known "
                "with its state.",
                "operationId": "status",
                "responses": {"200": _json(_ref("Status"), "The store's status.")},
            }
        },
        "/stores": {
            "get": {
                "summary": "Every store known, with its state as this store sees the cluster.",
                "description": "From this store's liveness view (store heartbeats every tick; "
                "a store not heard from for an election timeout is suspected) and the views "
                "the other stores gossip: `up` (every store that watches it hears from it), "
                "`down` (none does), `unreachable` (some do, some do not: see "
                "`unreachable_from`), `unknown` (no view of it yet).",
                "operationId": "listStores",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "store_id": {"type": "integer", "description": "This store."},
                                "stores": {"type": "array", "items": _ref("StoreState")},
                            },
                            "required": ["store_id", "stores"],
                        },
                        "The stores, by id.",
                    )
                },
            }
        },
        "/stores/{store_id}": {
            "delete": {
                "summary": "Forget a store that is gone for good.",
                "description": "Every store (the removal is gossiped) drops its address, "
                "stops watching it and refuses its connections; the store id must never be "
                "used again. Refused (409) unless no running store hears from it (state "
                "`down`) and no region on the store asked has a replica on it (move them "
                "first). Idempotent.",
                "operationId": "removeStore",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "store_id",
                        "in": "path",
                        "required": True,
                        "description": "The store to forget.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "store_id": {"type": "integer", "description": "This store."},
                                "stores": {"type": "array", "items": _ref("StoreState")},
                            },
                            "required": ["store_id", "stores"],
                        },
                        "Removed: the stores this store knows now.",
                    ),
                    **_errors(400, 401, 404, 409),
                },
            }
        },
        "/regions": {
            "get": {
                "summary": "Every region replica on this store, by start key.",
                "operationId": "listRegions",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"regions": {"type": "array", "items": _ref("Region")}},
                            "required": ["regions"],
                        },
                        "The regions.",
                    )
                },
            }
        },
        "/regions/{id}": {
            "get": {
                "summary": "One region as this store sees it.",
                "operationId": "getRegion",
                "parameters": [_REGION_ID],
                "responses": {"200": _json(_ref("Region"), "The region."), **_errors(400, 404)},
            }
        },
        "/regions/{id}/transfer-leader": {
            "post": {
                "summary": "Move the region's leadership to its voter on another store.",
                "description": "Answers once the transfer started; raft completes it within an "
                "election timeout or abandons it. Poll GET /regions/{id} for the new leader.",
                "operationId": "transferLeader",
                "security": _AUTH,
                "parameters": [_REGION_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("StoreRef")}},
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": ["started"]},
                                "to_store": {"type": "integer"},
                                "region": _ref("Region"),
                            },
                            "required": ["status", "to_store", "region"],
                        },
                        "The transfer started.",
                    ),
                    **_errors(400, 401, 404, 409, 503, 504),
                },
            }
        },
        "/regions/{id}/peers": {
            "post": {
                "summary": "Add a replica on a store (a voter, or a learner).",
                "description": "A learner: answers once it is added (applied on the leader); "
                "it catches up by snapshot. A voter: added as a learner first and promoted "
                "once it caught up (it holds the region's data and lacks at most a few log "
                "entries); answers once it is a voter, or 504 CATCH_UP_TIMEOUT if it did not "
                "catch up within `timeout` seconds — it then stays a learner, the region's "
                "voters are unchanged. Adding a voter on a store holding a learner promotes "
                "it the same way.",
                "operationId": "addPeer",
                "security": _AUTH,
                "parameters": [_REGION_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "store_id": {"type": "integer", "minimum": 1},
                                    "role": {
                                        "type": "string",
                                        "enum": ["voter", "learner"],
                                        "default": "voter",
                                    },
                                    "timeout": {
                                        "type": "number",
                                        "exclusiveMinimum": True,
                                        "minimum": 0,
                                        "maximum": 3600,
                                        "description": "Seconds to wait: for a voter, for its "
                                        "learner to catch up (default 60); for a learner, for "
                                        "the change to apply (default 15).",
                                    },
                                },
                                "required": ["store_id"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("RegionChanged"), "Applied."),
                    **_errors(400, 401, 404, 409, 503, 504),
                },
            }
        },
        "/regions/{id}/peers/{store_id}": {
            "delete": {
                "summary": "Remove the region's replica on a store.",
                "description": "The leader's replica cannot be removed: transfer leadership "
                "first.",
                "operationId": "removePeer",
                "security": _AUTH,
                "parameters": [
                    _REGION_ID,
                    {
                        "name": "store_id",
                        "in": "path",
                        "required": True,
                        "description": "The store whose replica goes.",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": _json(_ref("RegionChanged"), "Applied."),
                    **_errors(400, 401, 404, 409, 503, 504),
                },
            }
        },
        "/regions/{id}/split": {
            "post": {
                "summary": "Split the region at one or more keys.",
                "description": "Proposed through the region's raft log (a BatchSplit): every "
                "replica cuts the range at the same log index, the version grows by the number "
                "of keys, the new regions get fresh ids and copy the peers, and the region keeps "
                "the rightmost range. No data moves. Answers once the split is applied on the "
                "leader.",
                "operationId": "splitRegion",
                "security": _AUTH,
                "parameters": [_REGION_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "keys": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"type": "string", "description": "Hex."},
                                        "description": "Sorted, distinct, strictly inside "
                                        "the range.",
                                    },
                                    "epoch": {
                                        "type": "object",
                                        "description": "Optional: refuse (409) unless the "
                                        "region is still at this epoch.",
                                        "properties": {
                                            "conf_ver": {"type": "integer"},
                                            "version": {"type": "integer"},
                                        },
                                        "required": ["conf_ver", "version"],
                                    },
                                },
                                "required": ["keys"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Regions"), "Applied: the resulting regions in key order."),
                    **_errors(400, 401, 404, 409, 503, 504),
                },
            }
        },
        "/regions/{id}/merge": {
            "post": {
                "summary": "Merge the region into an adjacent one.",
                "description": "The two regions must be adjacent and have their replicas on "
                "the same stores (409 otherwise). PrepareMerge on this region, CommitMerge on "
                "the target; the target widens its range and this region is gone. Answers with "
                "the merged target once the merge is applied on this store; 409 "
                "MERGE_ROLLED_BACK if the target changed first and the merge was rolled back.",
                "operationId": "mergeRegion",
                "security": _AUTH,
                "parameters": [_REGION_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"target": {"type": "integer", "minimum": 1}},
                                "required": ["target"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("RegionChanged"), "Applied: the merged region."),
                    **_errors(400, 401, 404, 409, 503, 504),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "operationId": "openapi",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI 3 document.")
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Required on mutating calls when the store runs with "
                "--admin-token.",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "leader": {"$ref": "#/components/schemas/Leader"},
                        },
                        "required": ["code", "message"],
                    }
                },
                "required": ["error"],
            },
            "StoreRef": {
                "type": "object",
                "properties": {"store_id": {"type": "integer", "minimum": 1}},
                "required": ["store_id"],
            },
            "Leader": {
                "type": "object",
                "properties": {
                    "peer_id": {"type": "integer"},
                    "store_id": {"type": "integer"},
                },
                "required": ["peer_id", "store_id"],
            },
            "Region": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "start_key": {"type": "string", "description": "Hex; inclusive."},
                    "end_key": {
                        "type": "string",
                        "description": "Hex; exclusive; empty means +infinity.",
                    },
                    "epoch": {
                        "type": "object",
                        "properties": {
                            "conf_ver": {"type": "integer"},
                            "version": {"type": "integer"},
                        },
                        "required": ["conf_ver", "version"],
                    },
                    "peers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "store_id": {"type": "integer"},
                                "role": {
                                    "type": "string",
                                    "enum": [
                                        "voter",
                                        "learner",
                                        "incoming_voter",
                                        "demoting_voter",
                                    ],
                                },
                                "matched": {
                                    "type": "integer",
                                    "nullable": True,
                                    "description": "On the leader's store: the last log "
                                    "index the leader knows this replica holds (0: none yet; "
                                    "the leader's own: its last index). Null elsewhere.",
                                },
                            },
                            "required": ["id", "store_id", "role", "matched"],
                        },
                    },
                    "leader": {
                        "allOf": [{"$ref": "#/components/schemas/Leader"}],
                        "nullable": True,
                    },
                    "applied_index": {"type": "integer"},
                    "approximate_size": {
                        "type": "integer",
                        "description": "Bytes of keys and values (a lower bound for large "
                        "regions).",
                    },
                    "hibernated": {"type": "boolean"},
                },
                "required": [
                    "id",
                    "start_key",
                    "end_key",
                    "epoch",
                    "peers",
                    "leader",
                    "applied_index",
                    "approximate_size",
                    "hibernated",
                ],
            },
            "Regions": {
                "type": "object",
                "properties": {
                    "regions": {"type": "array", "items": {"$ref": "#/components/schemas/Region"}}
                },
                "required": ["regions"],
            },
            "RegionChanged": {
                "type": "object",
                "properties": {"region": {"$ref": "#/components/schemas/Region"}},
                "required": ["region"],
            },
            "StoreState": {
                "type": "object",
                "properties": {
                    "store_id": {"type": "integer"},
                    "state": {
                        "type": "string",
                        "enum": ["up", "down", "unreachable", "unknown"],
                    },
                    "peer_addr": {"type": "string"},
                    "client_addr": {"type": "string"},
                    "admin_addr": {"type": "string"},
                    "last_heard_seconds_ago": {
                        "type": "number",
                        "nullable": True,
                        "description": "Since this store last heard from it; null if never "
                        "since this store started (0 for this store itself).",
                    },
                    "down_since": {
                        "type": "number",
                        "nullable": True,
                        "description": "Unix time since which this store has not heard from "
                        "it (it is suspected down here); null if it hears from it.",
                    },
                    "unreachable_from": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "The stores (this one included) that do not hear "
                        "from it.",
                    },
                },
                "required": [
                    "store_id",
                    "state",
                    "peer_addr",
                    "client_addr",
                    "admin_addr",
                    "last_heard_seconds_ago",
                    "down_since",
                    "unreachable_from",
                ],
            },
            "Status": {
                "type": "object",
                "properties": {
                    "store_id": {"type": "integer"},
                    "cluster_id": {"type": "integer"},
                    "regions": {"type": "integer"},
                    "leaders": {"type": "integer"},
                    "hibernated": {"type": "integer"},
                    "without_leader": {
                        "type": "integer",
                        "description": "Regions here that know no leader (elections going on).",
                    },
                    "addresses": {
                        "type": "object",
                        "properties": {
                            "peer": {"type": "string"},
                            "client": {"type": "string"},
                            "admin": {"type": "string"},
                        },
                    },
                    "stores": {
                        "type": "object",
                        "description": "Every store known, by store id (as GET /stores).",
                        "additionalProperties": _ref("StoreState"),
                    },
                    "uptime_seconds": {"type": "number"},
                    "stopping": {"type": "boolean"},
                },
                "required": [
                    "store_id",
                    "cluster_id",
                    "regions",
                    "leaders",
                    "hibernated",
                    "addresses",
                    "uptime_seconds",
                ],
            },
        },
    },
}

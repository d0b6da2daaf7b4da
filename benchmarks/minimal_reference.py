# Copied verbatim from the team's benchmark yardstick (bench/minimal_reference.py in the shared
# folder beside the project; issue 18: "against the least work any migration of these blobs can do"),
# sha256 3cebc22c57aa324364d6446826eac2a04e94c9d26c0ccb1cc3f983c112fddaeb, below this comment.
# It is a script: the benchmark runs it with runpy in a process of its own (benchmarks/child.py).
# Kept as written, so it is left out of ruff (pyproject.toml).
"""Minimal hand-written backfill: json.loads + executemany of the relational rows, one transaction.

The yardstick for the backfill's speed: about the least work any migration of these blobs into
SQLite tables can do, in one process. It is lossy on purpose (no layouts, overlays, digests,
quarantine or exact types), so an exact migrator pays for exactness on top of it; how much is the
figure to watch. Standard library only.

usage: python3 minimal_reference.py LEGACY.db OUT.db"""
import json
import sqlite3
import sys

src, out = sys.argv[1], sys.argv[2]
s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
d = sqlite3.connect(out)
d.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY, timestamp TEXT, created_at TEXT, reason TEXT, extras TEXT);
CREATE TABLE checkpoint_queue (id INTEGER PRIMARY KEY, checkpoint_id INT, session_id TEXT, position INT, is_active INT, active_request TEXT);
CREATE TABLE checkpoint_queue_item (queue_id INT, position INT, request_id TEXT, timestamp TEXT, data TEXT);
CREATE TABLE checkpoint_request (checkpoint_id INT, position INT, request_id TEXT, session_id TEXT, status TEXT, data TEXT, queued_at TEXT, started_at TEXT, completed_at TEXT, error TEXT, extras TEXT);
CREATE TABLE mcp_session (id INTEGER PRIMARY KEY, session_key TEXT UNIQUE, agent_id TEXT, last_seen TEXT, created_at TEXT, thin_handshake INT, extras TEXT);
CREATE TABLE mcp_session_tool (session_id INT, position INT, tool_name TEXT, spec TEXT);
CREATE INDEX ix_tool ON mcp_session_tool(session_id);
CREATE INDEX ix_req ON checkpoint_request(checkpoint_id);
CREATE INDEX ix_agent ON mcp_session(agent_id);
""")
dumps = json.dumps


def t(x):
    """Text SQLite can store: a lone surrogate cannot be encoded, so such a value is kept escaped."""
    if type(x) is str and not x.isascii():
        try:
            x.encode()
        except UnicodeEncodeError:
            return dumps(x)
    return x
with d:
    cps, queues, items, reqs = [], [], [], []
    qid = 0
    for cid, ts, text in s.execute("SELECT id, timestamp, checkpoint_data FROM checkpoints"):
        try:
            b = json.loads(text)
            sq = b.get("session_queues") or {}
            ac = b.get("active_completions") or {}
            sq.items(); ac.items()
        except Exception:
            continue
        cps.append((cid, ts, t(b.get("timestamp")), t(b.get("reason")), None))
        for pos, (sid, q) in enumerate(sq.items()):
            qid += 1
            its = q if isinstance(q, list) else (q.get("items") or []) if isinstance(q, dict) else []
            queues.append((qid, cid, t(sid), pos, q.get("is_active") if isinstance(q, dict) else None,
                           t(q.get("active_request")) if isinstance(q, dict) else None))
            for ipos, it in enumerate(its):
                if isinstance(it, dict):
                    items.append((qid, ipos, t(it.get("request_id")), t(it.get("timestamp")), dumps(it.get("data"))))
        for pos, (rid, r) in enumerate(ac.items()):
            if isinstance(r, dict):
                reqs.append((cid, pos, t(rid), t(r.get("session_id")), t(r.get("status")), dumps(r.get("data")),
                             t(r.get("queued_at")), t(r.get("started_at")), t(r.get("completed_at")), t(r.get("error")), None))
    d.executemany("INSERT INTO checkpoint VALUES (?,?,?,?,?)", cps)
    d.executemany("INSERT INTO checkpoint_queue VALUES (?,?,?,?,?,?)", queues)
    d.executemany("INSERT INTO checkpoint_queue_item VALUES (?,?,?,?,?)", items)
    d.executemany("INSERT INTO checkpoint_request VALUES (?,?,?,?,?,?,?,?,?,?,?)", reqs)
    sessions, tools = [], []
    for sid, (key, text, last_seen) in enumerate(s.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions"), 1):
        try:
            b = json.loads(text)
            b.get
        except Exception:
            continue
        sessions.append((sid, key, t(b.get("agent_id")), last_seen, t(b.get("created_at") or b.get("created")),
                         b.get("thin_handshake"), None))
        for pos, tool in enumerate(b.get("tools") or []):
            if isinstance(tool, dict):
                tools.append((sid, pos, t(tool.get("name")), dumps(tool) if len(tool) > 1 else None))
            else:
                tools.append((sid, pos, t(tool), None))
    d.executemany("INSERT INTO mcp_session VALUES (?,?,?,?,?,?,?)", sessions)
    d.executemany("INSERT INTO mcp_session_tool VALUES (?,?,?,?)", tools)
n = sum(d.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
        ("checkpoint", "checkpoint_queue", "checkpoint_queue_item", "checkpoint_request", "mcp_session", "mcp_session_tool"))
print(f"reference rows written: {n}")

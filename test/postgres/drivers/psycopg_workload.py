"""psycopg 3 workload for the driver transparency comparison (direct vs through vigil).

Usage: python3 psycopg_workload.py CONNINFO. Prints one JSON object: name -> result. Everything printed must
be the same direct and through vigil (no pids, times or names of the connection itself).
"""
import hashlib
import json
import sys

import psycopg
from psycopg.types.numeric import Int4

out = {}
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    out["backend_pid_is_real"] = conn.info.backend_pid == conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text, data bytea)")

    # Pipeline mode: many statements sent before any result is read (extended protocol, one Sync at the end).
    sel = conn.cursor()
    with conn.pipeline():
        with conn.cursor() as cur:
            for i in range(1, 21):
                cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (i, f"item {i}", bytes([i]) * i))
        sel.execute("SELECT count(*), sum(id) FROM items")
    out["pipeline"] = list(sel.fetchone())
    # An error inside a pipeline aborts the rest up to the sync, as the server decides.
    try:
        with conn.pipeline():
            conn.execute("INSERT INTO items VALUES (100, 'ok', NULL)")
            conn.execute("INSERT INTO items VALUES (1, 'duplicate', NULL)")
            conn.execute("INSERT INTO items VALUES (101, 'skipped', NULL)")
    except psycopg.Error as e:
        out["pipeline_error"] = e.sqlstate
    out["after_pipeline_error"] = conn.execute("SELECT array_agg(id ORDER BY id) FROM items WHERE id >= 100").fetchone()[0]

    # Binary COPY in and out.
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, name, data) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "bytea"])
            for i in range(200, 700):
                copy.write_row((i, f"copied {i}", hashlib.sha256(str(i).encode()).digest()))
        out["copy_in_rows"] = cur.rowcount
        rows = []
        with cur.copy("COPY (SELECT id, name, data FROM items ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "bytea"])
            for row in copy.rows():
                rows.append(row)
        out["copy_out_rows"] = len(rows)
        out["copy_out_sha256"] = hashlib.sha256(repr([(r[0], r[1], bytes(r[2]) if r[2] is not None else None) for r in rows]).encode()).hexdigest()

    # Named (server-side) cursor: DECLARE + FETCH in batches of itersize, in a transaction.
    with conn.transaction():
        with conn.cursor(name="big_cursor") as cur:
            cur.itersize = 37
            cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 500) g")
            first = cur.fetchmany(5)
            rest = sum(1 for _ in cur)
    out["named_cursor"] = [len(first), rest, first[0][1]]

    # Server-side prepared statements (prepare=True), binary results.
    with conn.cursor(binary=True) as cur:
        got = []
        for i in range(5):
            cur.execute("SELECT %s::int * 2, %s::text || 'x'", (Int4(i), str(i)), prepare=True)
            got.append(list(cur.fetchone()))
    out["prepared_binary"] = got

    try:
        conn.execute("SELECT 1/0")
    except psycopg.Error as e:
        out["error"] = [e.sqlstate, e.diag.message_primary]

print(json.dumps(out, sort_keys=True))

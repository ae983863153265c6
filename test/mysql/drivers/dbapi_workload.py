"""The PyMySQL / mysqlclient side of the MySQL driver comparison (test/mysql/drivers/peers.ts).

Usage: dbapi_workload.py pymysql|mysqldb '<json connection settings>'
Prints one JSON object of results; the same workload direct and through vigil must print the same.
"""
import decimal
import json
import sys

which, settings = sys.argv[1], json.loads(sys.argv[2])
if which == "pymysql":
    import pymysql as driver
    import pymysql.cursors as cursors
    stream_cursor = cursors.SSCursor
else:
    import MySQLdb as driver
    import MySQLdb.cursors as cursors
    stream_cursor = cursors.SSCursor

kw = dict(host=settings["host"], port=settings["port"], user=settings["user"], db=settings["database"], charset="utf8mb4")
if settings.get("password"):
    kw["password" if which == "pymysql" else "passwd"] = settings["password"]
kw["ssl"] = {"ca": settings["ca"], "cert": settings["cert"], "key": settings["key"]}
conn = driver.connect(**kw)
out = {}


def plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


cur = conn.cursor()
table = f"dbapi_{which}"
cur.execute(f"DROP TABLE IF EXISTS {table}")
cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2), raw VARBINARY(16), doc JSON)")
cur.execute("SELECT @@version, @@character_set_client, @@collation_connection, @@autocommit")
out["session"] = [plain(v) for v in cur.fetchone()]
out["server_info"] = conn.get_server_info()
rows = [(i, f"name {i} ☃ 😀", decimal.Decimal(i) / 4, bytes([i, 0, 255]), json.dumps({"i": i, "s": "é"})) for i in range(1, 51)]
cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", rows)
out["executemany_rowcount"] = cur.rowcount
conn.commit()
cur.execute(f"SELECT id, name, price, raw, doc, JSON_VALUE(doc, '$.s') FROM {table} WHERE id IN (%s, %s) ORDER BY id", (7, 49))
out["select_params"] = [[plain(v) for v in r] for r in cur.fetchall()]
out["description"] = [d[:2] for d in cur.description]
conn.autocommit(False)
cur.execute(f"DELETE FROM {table} WHERE id > 40")
conn.rollback()
cur.execute(f"SELECT count(*) FROM {table}")
out["after_rollback"] = cur.fetchone()[0]
try:
    cur.execute(f"INSERT INTO {table} (id) VALUES (1)")
except driver.MySQLError as e:
    out["duplicate_error"] = e.args[0]
try:
    cur.execute("SELECT * FROM no_such_table")
except driver.MySQLError as e:
    out["missing_table_error"] = [e.args[0], e.args[1]]
conn.rollback()
conn.autocommit(True)
ss = conn.cursor(stream_cursor)
ss.execute("SELECT seq, seq * seq FROM seq_1_to_20000")
n, total = 0, 0
for r in ss:
    n += 1
    total += r[1]
ss.close()
out["streamed"] = [n, total]
conn.ping()
out["ping_then_query"] = (cur.execute("SELECT 42"), cur.fetchone()[0])[1]
cur.execute(f"DROP TABLE {table}")
conn.close()
print(json.dumps(out, default=plain, sort_keys=True))

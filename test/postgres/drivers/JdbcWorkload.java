import java.io.StringReader;
import java.io.StringWriter;
import java.security.MessageDigest;
import java.sql.*;
import java.util.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

/**
 * pgjdbc workload for the driver transparency comparison (direct vs through vigil). Usage:
 * java -cp postgresql.jar:. JdbcWorkload JDBC_URL. Prints name=value lines, sorted; everything printed must
 * be the same direct and through vigil.
 */
public class JdbcWorkload {
  public static void main(String[] args) throws Exception {
    TreeMap<String, String> out = new TreeMap<>();
    Properties props = new Properties();
    props.setProperty("prepareThreshold", "1");
    try (Connection c = DriverManager.getConnection(args[0], props)) {
      int driverPid = c.unwrap(PGConnection.class).getBackendPID();
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_backend_pid()")) {
        rs.next();
        out.put("backend_pid_is_real", String.valueOf(rs.getInt(1) == driverPid));
      }
      try (Statement s = c.createStatement()) {
        s.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text, amount numeric)");
      }

      // Server-prepared statements: with prepareThreshold=1 the second execution uses a named statement.
      StringBuilder prepared = new StringBuilder();
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, ?::text || '!'")) {
        for (int i = 0; i < 5; i++) {
          ps.setInt(1, i);
          ps.setString(2, "v" + i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            prepared.append(rs.getInt(1)).append(rs.getString(2)).append(' ');
          }
        }
        out.put("server_prepared_used", String.valueOf(ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare()));
      }
      out.put("server_prepared", prepared.toString().trim());

      // Batches: one round trip of many Bind/Execute.
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO items VALUES (?, ?, ?)")) {
        for (int i = 1; i <= 250; i++) {
          ps.setInt(1, i);
          ps.setString(2, "item " + i);
          ps.setBigDecimal(3, new java.math.BigDecimal(i).movePointLeft(2));
          ps.addBatch();
        }
        int[] counts = ps.executeBatch();
        out.put("batch_updates", String.valueOf(Arrays.stream(counts).sum()));
      }
      // A batch that fails part way: the server's error, and what was committed (autocommit: none of it).
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO items VALUES (?, 'dup', 0)")) {
        ps.setInt(1, 1000); ps.addBatch();
        ps.setInt(1, 1); ps.addBatch();
        ps.executeBatch();
      } catch (BatchUpdateException e) {
        out.put("batch_error", e.getSQLState());
      }

      // Fetch size: a portal read 13 rows at a time (Execute with a row limit, PortalSuspended).
      c.setAutoCommit(false);
      try (Statement s = c.createStatement()) {
        s.setFetchSize(13);
        long sum = 0;
        int n = 0;
        try (ResultSet rs = s.executeQuery("SELECT id, amount FROM items ORDER BY id")) {
          while (rs.next()) { sum += rs.getInt(1); n++; }
        }
        out.put("fetch_size_rows", n + "/" + sum);
      }
      c.commit();
      c.setAutoCommit(true);

      // CopyManager: COPY FROM STDIN and TO STDOUT.
      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      StringBuilder csv = new StringBuilder();
      for (int i = 500; i < 800; i++) csv.append(i).append(",copied ").append(i).append(',').append(i % 7).append('\n');
      out.put("copy_in", String.valueOf(cm.copyIn("COPY items FROM STDIN (FORMAT csv)", new StringReader(csv.toString()))));
      StringWriter w = new StringWriter();
      long copied = cm.copyOut("COPY (SELECT * FROM items ORDER BY id) TO STDOUT (FORMAT csv)", w);
      byte[] digest = MessageDigest.getInstance("SHA-256").digest(w.toString().getBytes("UTF-8"));
      out.put("copy_out", copied + " " + HexFormat.of().formatHex(digest));

      // Cancel: Statement.cancel() from another thread sends a CancelRequest with the connection's key.
      try (Statement s = c.createStatement()) {
        Thread t = new Thread(() -> {
          try {
            Thread.sleep(700);
            s.cancel();
          } catch (Exception e) {
            throw new RuntimeException(e);
          }
        });
        t.start();
        try {
          s.execute("SELECT pg_sleep(20)");
          out.put("cancel", "not cancelled");
        } catch (SQLException e) {
          out.put("cancel", e.getSQLState());
        }
        t.join();
      }
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM items")) {
        rs.next();
        out.put("after_cancel", String.valueOf(rs.getInt(1)));
      }
    }
    for (Map.Entry<String, String> e : out.entrySet()) System.out.println(e.getKey() + "=" + e.getValue());
  }
}

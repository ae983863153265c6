import java.sql.*;

/**
 * The MariaDB Connector/J side of the MySQL driver comparison (test/mysql/drivers/peers.ts): one workload,
 * printed as key=value lines that must be the same direct and through vigil. Argument: the JDBC URL.
 */
public class ConnectorJWorkload {
  public static void main(String[] args) throws Exception {
    try (Connection c = DriverManager.getConnection(args[0])) {
      DatabaseMetaData md = c.getMetaData();
      System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
      // MariaDB's variable is tx_isolation; a driver that took the server for MySQL 8 asks for transaction_isolation (1193).
      c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
      System.out.println("isolation=" + c.getTransactionIsolation());
      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE IF EXISTS cj");
        s.execute("CREATE TABLE cj (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2), raw VARBINARY(8), doc JSON, at DATETIME(6))");
      }
      c.setAutoCommit(false);
      try (PreparedStatement p = c.prepareStatement("INSERT INTO cj VALUES (?, ?, ?, ?, ?, ?)")) {
        for (int i = 1; i <= 200; i++) {
          p.setInt(1, i);
          p.setString(2, "name " + i + " \u00e9\u2603");
          p.setBigDecimal(3, new java.math.BigDecimal(i).movePointLeft(2));
          p.setBytes(4, new byte[] {(byte) i, 0, (byte) 0xff});
          p.setString(5, "{\"i\":" + i + "}");
          p.setTimestamp(6, Timestamp.valueOf("2026-01-02 03:04:05.123456"));
          p.addBatch();
        }
        int sum = 0;
        for (int n : p.executeBatch()) sum += n;
        System.out.println("batch=" + sum);
      }
      c.commit();
      c.setAutoCommit(true);
      try (PreparedStatement p = c.prepareStatement("SELECT id, name, price, HEX(raw), JSON_VALUE(doc, '$.i'), at FROM cj WHERE id BETWEEN ? AND ? ORDER BY id")) {
        StringBuilder sb = new StringBuilder();
        for (int round = 0; round < 3; round++) {
          p.setInt(1, 10 * round + 1);
          p.setInt(2, 10 * round + 2);
          try (ResultSet r = p.executeQuery()) {
            while (r.next()) sb.append(r.getInt(1)).append('/').append(r.getString(2)).append('/').append(r.getBigDecimal(3)).append('/').append(r.getString(4)).append('/').append(r.getString(5)).append('/').append(r.getTimestamp(6)).append(';');
          }
        }
        System.out.println("prepared_select=" + sb);
      }
      try (Statement s = c.createStatement()) {
        s.setFetchSize(100);
        long n = 0, total = 0;
        try (ResultSet r = s.executeQuery("SELECT seq FROM seq_1_to_50000")) {
          while (r.next()) { n++; total += r.getLong(1); }
        }
        System.out.println("fetch_size_rows=" + n + "/" + total);
        try {
          s.executeQuery("SELECT * FROM no_such_table");
        } catch (SQLException e) {
          System.out.println("error=" + e.getErrorCode() + "/" + e.getSQLState());
        }
        try (ResultSet r = s.executeQuery("SELECT @@tx_isolation, @@autocommit")) {
          r.next();
          System.out.println("session=" + r.getString(1) + "/" + r.getString(2));
        }
        s.execute("DROP TABLE cj");
      }
    }
  }
}

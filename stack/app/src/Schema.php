<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * The app's tables as numbered migrations, run by `doctrine:migrations:migrate -n` and
 * recorded in Doctrine's table (doctrine_migration_versions), so a second run does nothing.
 */
final class Schema
{
    /** @return array<string, list<string>> version => statements, in order */
    public static function migrations(): array
    {
        return [
            'Pimops\\Migrations\\Version20250520000001' => [
                <<<'SQL'
                CREATE TABLE IF NOT EXISTS products (
                  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                  sku VARCHAR(64) NOT NULL,
                  name VARCHAR(255) NOT NULL,
                  description TEXT NOT NULL,
                  price DECIMAL(10,2) NOT NULL,
                  indexed_at DATETIME NULL,
                  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
                  updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
                  UNIQUE KEY sku (sku)
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
                SQL,
                <<<'SQL'
                CREATE TABLE IF NOT EXISTS assets (
                  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                  path VARCHAR(512) NOT NULL,
                  size BIGINT UNSIGNED NOT NULL,
                  sha256 CHAR(64) NOT NULL,
                  mime VARCHAR(127) NOT NULL,
                  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
                  processed_at DATETIME NULL,
                  UNIQUE KEY path (path)
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
                SQL,
            ],
            'Pimops\\Migrations\\Version20250520000002' => [
                // Pimcore's temporary store, which maintenance purges.
                <<<'SQL'
                CREATE TABLE IF NOT EXISTS tmp_store (
                  id VARCHAR(190) NOT NULL PRIMARY KEY,
                  tag VARCHAR(190) NULL,
                  data LONGTEXT NULL,
                  date INT UNSIGNED NOT NULL,
                  expiry_date INT UNSIGNED NOT NULL,
                  KEY expiry_date (expiry_date)
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
                SQL,
                <<<'SQL'
                CREATE TABLE IF NOT EXISTS settings_store (
                  id VARCHAR(190) NOT NULL PRIMARY KEY,
                  data TEXT NULL
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
                SQL,
                // Class definitions as the release step last applied them from var/classes.
                <<<'SQL'
                CREATE TABLE IF NOT EXISTS classes (
                  name VARCHAR(64) NOT NULL PRIMARY KEY,
                  checksum CHAR(64) NOT NULL,
                  definition LONGTEXT NOT NULL,
                  updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
                SQL,
            ],
        ];
    }

    /**
     * Run the migrations not yet recorded, under a named lock so two release steps at once
     * cannot both run one. Returns the versions run now.
     *
     * @return list<string>
     */
    public static function migrate(\PDO $db): array
    {
        $locked = $db->query("SELECT GET_LOCK('pimops_migrations', 60)")->fetchColumn();
        if ((string) $locked !== '1') {
            throw new \RuntimeException('another migration holds the lock pimops_migrations (waited 60s)');
        }
        try {
            $db->exec(<<<'SQL'
                CREATE TABLE IF NOT EXISTS doctrine_migration_versions (
                  version VARCHAR(191) NOT NULL PRIMARY KEY,
                  executed_at DATETIME NULL,
                  execution_time INT NULL
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
                SQL);
            $done = $db->query('SELECT version FROM doctrine_migration_versions')->fetchAll(\PDO::FETCH_COLUMN);
            $ran = [];
            foreach (self::migrations() as $version => $statements) {
                if (in_array($version, $done, true)) {
                    continue;
                }
                $start = hrtime(true);
                // DDL commits implicitly in MariaDB: each statement is idempotent instead.
                foreach ($statements as $sql) {
                    $db->exec($sql);
                }
                $ms = intdiv(hrtime(true) - $start, 1_000_000);
                $db->prepare('INSERT INTO doctrine_migration_versions VALUES (?, NOW(), ?)')
                    ->execute([$version, $ms]);
                $ran[] = $version;
            }
            return $ran;
        } finally {
            $db->query("SELECT RELEASE_LOCK('pimops_migrations')");
        }
    }
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * Class definitions live in git (var/classes/NAME.json), like Pimcore's var/classes with
 * PIMCORE_CLASS_DEFINITION_WRITABLE=0: the release step applies them to the database
 * (`pimcore:deployment:classes-rebuild`), and only a writable env (dev) lets the admin
 * endpoint write a file.
 *
 * A definition: {"name": "Product", "fields": [{"name": "ean", "type": "input"}, …]}.
 * Each class gets a table object_store_NAME (oo_id plus one column per field).
 */
final class ClassDefinitions
{
    private const TYPES = [
        'input' => 'VARCHAR(255) NULL',
        'textarea' => 'LONGTEXT NULL',
        'numeric' => 'DOUBLE NULL',
        'checkbox' => 'TINYINT(1) NULL',
        'date' => 'DATETIME NULL',
    ];
    private const NAME = '/^[A-Za-z][A-Za-z0-9_]{0,47}$/';

    public static function dir(Config $config): string
    {
        return $config->appDir . '/var/classes';
    }

    /**
     * A definition checked and normalised; throws \InvalidArgumentException saying what is wrong.
     *
     * @return array{name: string, fields: list<array{name: string, type: string}>}
     */
    public static function validate(mixed $def): array
    {
        if (!is_array($def) || !is_string($def['name'] ?? null) || !preg_match(self::NAME, $def['name'])) {
            throw new \InvalidArgumentException('a definition needs "name": letters, digits and _ (starting with a letter)');
        }
        $fields = $def['fields'] ?? [];
        if (!is_array($fields) || !array_is_list($fields)) {
            throw new \InvalidArgumentException('"fields" must be a list');
        }
        $seen = [];
        $out = [];
        foreach ($fields as $i => $f) {
            $name = is_array($f) ? ($f['name'] ?? null) : null;
            $type = is_array($f) ? ($f['type'] ?? null) : null;
            if (!is_string($name) || !preg_match(self::NAME, $name) || strtolower($name) === 'oo_id') {
                throw new \InvalidArgumentException("field $i needs a \"name\" (letters, digits, _; not oo_id)");
            }
            if (!is_string($type) || !isset(self::TYPES[$type])) {
                throw new \InvalidArgumentException("field $name: \"type\" must be one of " . implode(', ', array_keys(self::TYPES)));
            }
            if (isset($seen[strtolower($name)])) {
                throw new \InvalidArgumentException("field $name appears twice");
            }
            $seen[strtolower($name)] = true;
            $out[] = ['name' => $name, 'type' => $type];
        }
        return ['name' => $def['name'], 'fields' => $out];
    }

    /**
     * Every definition file, by class name.
     *
     * @return array<string, array{name: string, fields: list<array{name: string, type: string}>}>
     */
    public static function fromFiles(Config $config): array
    {
        $defs = [];
        $files = glob(self::dir($config) . '/*.json') ?: [];
        sort($files);
        foreach ($files as $file) {
            $json = @file_get_contents($file);
            if ($json === false) {
                throw new \RuntimeException("cannot read $file");
            }
            try {
                $def = self::validate(json_decode($json, true, 64, JSON_THROW_ON_ERROR));
            } catch (\JsonException | \InvalidArgumentException $e) {
                throw new \RuntimeException("$file: " . $e->getMessage(), 0, $e);
            }
            if ($def['name'] . '.json' !== basename($file)) {
                throw new \RuntimeException("$file defines class {$def['name']}: the file must be named {$def['name']}.json");
            }
            $defs[$def['name']] = $def;
        }
        return $defs;
    }

    /**
     * Apply the files to the database. $create: classes without a database row are created
     * (Pimcore's -c); $delete: rows without a file are removed (-d; data tables stay).
     * Idempotent. Returns "NAME: what happened" lines.
     *
     * @return list<string>
     */
    public static function rebuild(\PDO $db, Config $config, bool $create, bool $delete): array
    {
        $files = self::fromFiles($config);
        $known = $db->query('SELECT name, checksum FROM classes')->fetchAll(\PDO::FETCH_KEY_PAIR);
        $report = [];
        foreach ($files as $name => $def) {
            $json = json_encode($def, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
            $checksum = hash('sha256', $json);
            if (!isset($known[$name]) && !$create) {
                $report[] = "$name: not in the database, skipped (-c creates it)";
                continue;
            }
            $added = self::ensureTable($db, $def);
            if (($known[$name] ?? null) === $checksum && $added === 0) {
                $report[] = "$name: unchanged";
                continue;
            }
            $db->prepare('INSERT INTO classes (name, checksum, definition) VALUES (?, ?, ?)
                          ON DUPLICATE KEY UPDATE checksum = VALUES(checksum), definition = VALUES(definition)')
                ->execute([$name, $checksum, $json]);
            $report[] = isset($known[$name]) ? "$name: updated ($added new columns)" : "$name: created";
        }
        foreach (array_keys($known) as $name) {
            if (!isset($files[$name])) {
                if ($delete) {
                    $db->prepare('DELETE FROM classes WHERE name = ?')->execute([$name]);
                    $report[] = "$name: no file, deleted from the database";
                } else {
                    $report[] = "$name: no file, kept (-d deletes it)";
                }
            }
        }
        return $report;
    }

    /** object_store_NAME with a column per field; returns how many columns were added. */
    private static function ensureTable(\PDO $db, array $def): int
    {
        $table = 'object_store_' . $def['name'];
        $db->exec("CREATE TABLE IF NOT EXISTS `$table` (oo_id INT UNSIGNED NOT NULL PRIMARY KEY)
                   ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci");
        $st = $db->prepare('SELECT LOWER(COLUMN_NAME) FROM information_schema.COLUMNS
                            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?');
        $st->execute([$table]);
        $columns = array_flip($st->fetchAll(\PDO::FETCH_COLUMN));
        $added = 0;
        foreach ($def['fields'] as $f) {
            if (!isset($columns[strtolower($f['name'])])) {
                // Names are checked by validate(): letters, digits and _ only.
                $db->exec("ALTER TABLE `$table` ADD COLUMN `{$f['name']}` " . self::TYPES[$f['type']]);
                $added++;
            }
        }
        return $added;
    }

    /** Write var/classes/NAME.json (only where definitions are writable); returns the path. */
    public static function write(Config $config, array $def): string
    {
        $path = self::dir($config) . '/' . $def['name'] . '.json';
        $tmp = $path . '.tmp' . getmypid();
        $json = json_encode($def, JSON_THROW_ON_ERROR | JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
        if (@file_put_contents($tmp, $json) === false || !@rename($tmp, $path)) {
            @unlink($tmp);
            throw new \RuntimeException("cannot write $path");
        }
        return $path;
    }
}

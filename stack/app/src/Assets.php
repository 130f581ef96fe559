<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * Uploads into the asset volume (public/var/assets, mounted in php and nginx alike; nginx
 * serves them at /var/assets/…), one row per file in the assets table.
 */
final class Assets
{
    /** Never stored: nginx would not run them, but they have no place among assets. */
    private const REFUSED = '/\.(?:php\d?|phtml|phar|htaccess)$/i';

    public static function dir(Config $config): string
    {
        return $config->appDir . '/public/var/assets';
    }

    /** A safe file name from a client's: letters, digits, dot, dash, underscore. */
    public static function safeName(string $clientName): string
    {
        $base = basename(str_replace('\\', '/', $clientName));
        $safe = trim((string) preg_replace('/[^A-Za-z0-9._-]+/', '-', $base), '.-');
        if ($safe === '' || preg_match(self::REFUSED, $safe)) {
            throw new \InvalidArgumentException("file name '$clientName' is not accepted");
        }
        return substr($safe, -120);
    }

    /**
     * Move an uploaded file to uploads/NAME (replacing one of the same name) and record it.
     *
     * @return array{id: int, path: string, url: string, size: int, sha256: string, mime: string}
     */
    public static function store(\PDO $db, Config $config, string $tmpFile, string $clientName): array
    {
        $name = self::safeName($clientName);
        $relative = 'uploads/' . $name;
        $dir = self::dir($config) . '/uploads';
        if (!is_dir($dir) && !@mkdir($dir, 0755, true) && !is_dir($dir)) {
            throw new \RuntimeException("cannot create $dir");
        }
        $target = "$dir/$name";
        if (!move_uploaded_file($tmpFile, $target)) {
            throw new \RuntimeException("cannot store the upload as $target");
        }
        @chmod($target, 0644);
        $size = (int) filesize($target);
        $sha256 = (string) hash_file('sha256', $target);
        $mime = (string) (mime_content_type($target) ?: 'application/octet-stream');
        try {
            $db->prepare('INSERT INTO assets (path, size, sha256, mime) VALUES (?, ?, ?, ?)
                          ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), size = VALUES(size),
                          sha256 = VALUES(sha256), mime = VALUES(mime), processed_at = NULL')
                ->execute([$relative, $size, $sha256, $mime]);
        } catch (\PDOException $e) {
            // A file without its row would be an asset the database does not know.
            @unlink($target);
            throw $e;
        }
        $id = (int) $db->lastInsertId();
        return [
            'id' => $id,
            'path' => $relative,
            'url' => '/var/assets/' . $relative,
            'size' => $size,
            'sha256' => $sha256,
            'mime' => $mime,
        ];
    }

    /** The worker's job for an upload: check the file against its row, mark it processed. */
    public static function process(\PDO $db, Config $config, int $id): string
    {
        $st = $db->prepare('SELECT path, sha256 FROM assets WHERE id = ?');
        $st->execute([$id]);
        $row = $st->fetch();
        if ($row === false) {
            return "asset $id: gone";
        }
        $file = self::dir($config) . '/' . $row['path'];
        $actual = is_file($file) ? hash_file('sha256', $file) : null;
        if ($actual !== $row['sha256']) {
            return "asset $id: {$row['path']} " . ($actual === null ? 'missing' : 'changed') . ' on disk';
        }
        $db->prepare('UPDATE assets SET processed_at = NOW() WHERE id = ?')->execute([$id]);
        return "asset $id: processed";
    }
}

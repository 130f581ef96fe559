<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/** The products table: what the product page shows and `app:seed` writes. */
final class Products
{
    private const ADJECTIVES = ['Compact', 'Robust', 'Silent', 'Modular', 'Classic', 'Smart', 'Light', 'Heavy'];
    private const NOUNS = ['Drill', 'Lamp', 'Chair', 'Kettle', 'Bike', 'Router', 'Backpack', 'Monitor'];

    /** @return array<string, mixed>|null */
    public static function find(\PDO $db, int $id): ?array
    {
        $st = $db->prepare('SELECT id, sku, name, description, price, indexed_at, created_at, updated_at FROM products WHERE id = ?');
        $st->execute([$id]);
        $row = $st->fetch();
        return $row === false ? null : $row;
    }

    /** @return list<array<string, mixed>> */
    public static function latest(\PDO $db, int $limit): array
    {
        $st = $db->prepare('SELECT id, sku, name, price FROM products ORDER BY id DESC LIMIT ?');
        $st->bindValue(1, $limit, \PDO::PARAM_INT);
        $st->execute();
        return $st->fetchAll();
    }

    public static function count(\PDO $db): int
    {
        return (int) $db->query('SELECT COUNT(*) FROM products')->fetchColumn();
    }

    /** Write $n sample products in batches; returns the table's row count afterwards. */
    public static function seed(\PDO $db, int $n): int
    {
        $batch = 500;
        // A run-unique prefix keeps SKUs unique when seeds run side by side.
        $run = bin2hex(random_bytes(4));
        for ($done = 0; $done < $n; $done += $batch) {
            $rows = min($batch, $n - $done);
            $sql = 'INSERT INTO products (sku, name, description, price) VALUES '
                . implode(',', array_fill(0, $rows, '(?, ?, ?, ?)'));
            $params = [];
            for ($i = 0; $i < $rows; $i++) {
                $k = $done + $i;
                $name = self::ADJECTIVES[$k % 8] . ' ' . self::NOUNS[intdiv($k, 8) % 8] . ' ' . ($k + 1);
                array_push(
                    $params,
                    sprintf('PIM-%s-%07d', $run, $k + 1),
                    $name,
                    "$name: a sample product written by app:seed (pimops stand-in for Pimcore).",
                    sprintf('%.2f', 5 + ($k * 7919 % 99500) / 100),
                );
            }
            $db->beginTransaction();
            $db->prepare($sql)->execute($params);
            $db->commit();
        }
        return self::count($db);
    }

    public static function markIndexed(\PDO $db, int $id): bool
    {
        $st = $db->prepare('UPDATE products SET indexed_at = NOW() WHERE id = ?');
        $st->execute([$id]);
        return $st->rowCount() > 0;
    }
}

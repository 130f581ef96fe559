<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * Messenger's stand-in: a Redis list per transport (pimops:queue:TRANSPORT), JSON messages
 * {"type": …, "id": …}, pushed by the app and consumed by `messenger:consume`.
 */
final class Queue
{
    public const TRANSPORTS = ['pimcore_core', 'pimcore_maintenance', 'pimcore_asset_update'];

    public static function key(string $transport): string
    {
        return 'pimops:queue:' . $transport;
    }

    /** @param array<string, mixed> $message */
    public static function push(\Redis $redis, string $transport, array $message): void
    {
        $redis->rPush(self::key($transport), json_encode($message, JSON_THROW_ON_ERROR));
    }

    /**
     * The next message from any of $transports, waiting up to $waitSeconds; null when none.
     *
     * @param list<string> $transports
     * @return array{0: string, 1: array<string, mixed>|null}|null  [transport, message or null if malformed]
     */
    public static function pop(\Redis $redis, array $transports, int $waitSeconds): ?array
    {
        $keys = array_map([self::class, 'key'], $transports);
        $got = $redis->blPop($keys, $waitSeconds);
        if (!is_array($got) || count($got) !== 2) {
            return null;
        }
        $transport = substr((string) $got[0], strlen('pimops:queue:'));
        $message = json_decode((string) $got[1], true);
        return [$transport, is_array($message) ? $message : null];
    }

    /** Run one message; returns what happened, for the worker's log. */
    public static function handle(\PDO $db, Config $config, array $message): string
    {
        $id = $message['id'] ?? null;
        if (!is_int($id)) {
            return 'dropped: no integer "id"';
        }
        return match ($message['type'] ?? null) {
            'asset.update' => Assets::process($db, $config, $id),
            'product.index' => Products::markIndexed($db, $id) ? "product $id: indexed" : "product $id: gone",
            default => 'dropped: unknown type',
        };
    }
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * Redis as a read-through cache (keys under "pimops:cache:"), the way Pimcore uses its
 * Redis cache pool. When Redis is down, pages are still served from the database.
 */
final class Cache
{
    public const PREFIX = 'pimops:cache:';

    private function __construct(private readonly ?\Redis $redis)
    {
    }

    public static function connect(Config $config, float $timeoutSeconds = 1.0): \Redis
    {
        $redis = new \Redis();
        // Its warning would repeat the exception's message.
        @$redis->connect($config->redisHost, $config->redisPort, $timeoutSeconds);
        $redis->setOption(\Redis::OPT_READ_TIMEOUT, $timeoutSeconds);
        if ($config->redisPassword !== null) {
            $redis->auth($config->redisPassword);
        }
        return $redis;
    }

    /** A cache on Redis, or one that always loads when Redis cannot be reached. */
    public static function open(Config $config): self
    {
        try {
            return new self(self::connect($config));
        } catch (\RedisException $e) {
            error_log('pimops: redis unavailable, serving without cache: ' . $e->getMessage());
            return new self(null);
        }
    }

    /**
     * The value under $key, or what $load returns (stored for $ttl seconds unless null).
     * Returns [value, "hit" | "miss" | "bypass"].
     *
     * @return array{0: mixed, 1: string}
     */
    public function remember(string $key, int $ttl, callable $load): array
    {
        if ($this->redis === null) {
            return [$load(), 'bypass'];
        }
        try {
            $raw = $this->redis->get(self::PREFIX . $key);
            if (is_string($raw)) {
                return [json_decode($raw, true, 512, JSON_THROW_ON_ERROR), 'hit'];
            }
        } catch (\RedisException | \JsonException $e) {
            error_log("pimops: cache read of $key failed: " . $e->getMessage());
            return [$load(), 'bypass'];
        }
        $value = $load();
        if ($value !== null) {
            try {
                $this->redis->setex(self::PREFIX . $key, $ttl, json_encode($value, JSON_THROW_ON_ERROR));
            } catch (\RedisException $e) {
                error_log("pimops: cache write of $key failed: " . $e->getMessage());
            }
        }
        return [$value, 'miss'];
    }

    public function forget(string $key): void
    {
        try {
            $this->redis?->del(self::PREFIX . $key);
        } catch (\RedisException $e) {
            error_log("pimops: cache delete of $key failed: " . $e->getMessage());
        }
    }

    /** Delete every cache key; returns how many. */
    public static function clear(\Redis $redis): int
    {
        $deleted = 0;
        $it = null;
        do {
            $keys = $redis->scan($it, self::PREFIX . '*', 1000);
            if (is_array($keys) && $keys !== []) {
                $deleted += (int) $redis->del($keys);
            }
        } while ($it > 0);
        return $deleted;
    }
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * The app's settings, from the environment only (the stack sets them; secrets come as
 * files from Swarm secrets). Pimcore reads the same variable names.
 */
final class Config
{
    public function __construct(
        public readonly string $dbHost,
        public readonly int $dbPort,
        public readonly string $dbName,
        public readonly string $dbUser,
        public readonly string $dbPassword,
        public readonly string $redisHost,
        public readonly int $redisPort,
        public readonly ?string $redisPassword,
        public readonly string $env,
        public readonly bool $classesWritable,
        public readonly int $cacheTtl,
        public readonly string $appDir,
    ) {
    }

    public static function fromEnv(): self
    {
        return new self(
            dbHost: self::string('DATABASE_HOST', 'mariadb'),
            dbPort: self::int('DATABASE_PORT', 3306),
            dbName: self::string('DATABASE_NAME', 'pimcore'),
            dbUser: self::string('DATABASE_USER', 'pimcore'),
            dbPassword: self::secret('DATABASE_PASSWORD') ?? '',
            redisHost: self::string('REDIS_HOST', 'redis'),
            redisPort: self::int('REDIS_PORT', 6379),
            redisPassword: self::secret('REDIS_PASSWORD'),
            env: self::string('PIMOPS_ENV', 'dev'),
            classesWritable: self::flag('PIMCORE_CLASS_DEFINITION_WRITABLE', false),
            cacheTtl: self::int('PIMOPS_CACHE_TTL', 30),
            appDir: dirname(__DIR__),
        );
    }

    private static function env(string $name): ?string
    {
        $v = getenv($name);
        return ($v === false || $v === '') ? null : $v;
    }

    private static function string(string $name, string $default): string
    {
        return self::env($name) ?? $default;
    }

    private static function int(string $name, int $default): int
    {
        $v = self::env($name);
        if ($v === null) {
            return $default;
        }
        if (!ctype_digit($v) || (int) $v > 65535 * 1000) {
            throw new ConfigError("$name must be a whole number, not '$v'");
        }
        return (int) $v;
    }

    private static function flag(string $name, bool $default): bool
    {
        $v = self::env($name);
        return match ($v) {
            null => $default,
            '1', 'true' => true,
            '0', 'false' => false,
            default => throw new ConfigError("$name must be 0 or 1, not '$v'"),
        };
    }

    /** NAME_FILE (a Swarm secret: the file's content, trailing newlines dropped) or NAME. */
    private static function secret(string $name): ?string
    {
        $file = self::env("{$name}_FILE");
        $value = self::env($name);
        if ($file !== null && $value !== null) {
            throw new ConfigError("set $name or {$name}_FILE, not both");
        }
        if ($file === null) {
            return $value;
        }
        $content = @file_get_contents($file);
        if ($content === false) {
            throw new ConfigError("{$name}_FILE names $file, which cannot be read");
        }
        return rtrim($content, "\r\n");
    }
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/** MariaDB through PDO: one connection per request or command. */
final class Database
{
    public static function connect(Config $config, int $timeoutSeconds = 3): \PDO
    {
        $dsn = sprintf(
            'mysql:host=%s;port=%d;dbname=%s;charset=utf8mb4',
            $config->dbHost,
            $config->dbPort,
            $config->dbName,
        );
        return new \PDO($dsn, $config->dbUser, $config->dbPassword, [
            \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
            \PDO::ATTR_DEFAULT_FETCH_MODE => \PDO::FETCH_ASSOC,
            \PDO::ATTR_EMULATE_PREPARES => false,
            \PDO::ATTR_TIMEOUT => $timeoutSeconds,
        ]);
    }
}

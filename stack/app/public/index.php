<?php
// Front controller of the pimops stand-in for Pimcore (nginx sends every dynamic request here).
declare(strict_types=1);

use Pimops\StandIn\Config;
use Pimops\StandIn\ConfigError;
use Pimops\StandIn\Http;

require dirname(__DIR__) . '/src/bootstrap.php';

$method = (string) ($_SERVER['REQUEST_METHOD'] ?? 'GET');
$uri = (string) ($_SERVER['REQUEST_URI'] ?? '/');
try {
    (new Http(Config::fromEnv()))->handle($method, $uri);
} catch (ConfigError $e) {
    error_log('pimops: configuration: ' . $e->getMessage());
    http_response_code(500);
    header('Content-Type: text/plain; charset=utf-8');
    echo 'configuration error: ', $e->getMessage(), "\n";
} catch (\PDOException | \RedisException $e) {
    error_log("pimops: $method $uri: " . $e->getMessage());
    http_response_code(503);
    header('Content-Type: text/plain; charset=utf-8');
    header('Retry-After: 5');
    echo "a backing service is unavailable\n";
} catch (\Throwable $e) {
    error_log("pimops: $method $uri: " . get_class($e) . ': ' . $e->getMessage());
    http_response_code(500);
    header('Content-Type: text/plain; charset=utf-8');
    echo "internal error\n";
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/**
 * bin/console: the Pimcore command names the stack's release step, cron and worker run.
 * Exit codes: 0 done, 1 failed, 2 usage.
 */
final class Console
{
    private const COMMANDS = [
        'doctrine:migrations:migrate' => 'create or update the tables (idempotent)',
        'pimcore:deployment:classes-rebuild' => 'apply var/classes/*.json to the database (-c create missing, -d delete missing)',
        'pimcore:maintenance' => 'one maintenance pass: purge expired tmp_store rows, queue unindexed products',
        'messenger:consume' => 'consume queued messages ([TRANSPORT…] --time-limit=SECONDS --limit=N; --memory-limit, --sleep accepted and ignored)',
        'cache:clear' => 'delete every cache key in Redis',
        'app:seed' => 'write N sample products (app:seed N)',
        'list' => 'these commands',
    ];

    private bool $stop = false;

    /** @param list<string> $argv the script's arguments without the script name */
    public static function main(array $argv): int
    {
        $console = new self();
        try {
            return $console->run($argv);
        } catch (UsageError $e) {
            fwrite(STDERR, 'console: ' . $e->getMessage() . " (see bin/console list)\n");
            return 2;
        } catch (\Throwable $e) {
            fwrite(STDERR, 'console: error: ' . $e->getMessage() . "\n");
            return 1;
        }
    }

    /** @param list<string> $argv */
    private function run(array $argv): int
    {
        [$positional, $options] = self::parse($argv);
        $name = array_shift($positional) ?? 'list';
        if (!isset(self::COMMANDS[$name])) {
            throw new UsageError("unknown command '$name'");
        }
        if ($name === 'list') {
            self::only($options, []);
            foreach (self::COMMANDS as $cmd => $help) {
                printf("  %-38s %s\n", $cmd, $help);
            }
            echo "pimops stand-in for Pimcore: these are Pimcore's command names.\n";
            return 0;
        }
        $config = Config::fromEnv();
        return match ($name) {
            'doctrine:migrations:migrate' => $this->migrate($config, $positional, $options),
            'pimcore:deployment:classes-rebuild' => $this->classesRebuild($config, $positional, $options),
            'pimcore:maintenance' => $this->maintenance($config, $positional, $options),
            'messenger:consume' => $this->consume($config, $positional, $options),
            'cache:clear' => $this->cacheClear($config, $positional, $options),
            'app:seed' => $this->seed($config, $positional, $options),
        };
    }

    private function migrate(Config $config, array $args, array $options): int
    {
        self::only($options, []);
        self::noArgs($args);
        $ran = Schema::migrate(Database::connect($config));
        echo $ran === []
            ? "[OK] Already at the latest version, nothing to migrate.\n"
            : '[OK] Migrated ' . count($ran) . ': ' . implode(', ', $ran) . "\n";
        return 0;
    }

    private function classesRebuild(Config $config, array $args, array $options): int
    {
        self::only($options, ['create-classes', 'delete-classes']);
        self::noArgs($args);
        $lines = ClassDefinitions::rebuild(
            Database::connect($config),
            $config,
            isset($options['create-classes']),
            isset($options['delete-classes']),
        );
        foreach ($lines as $line) {
            echo $line, "\n";
        }
        echo '[OK] ' . count($lines) . " class definitions from var/classes\n";
        return 0;
    }

    private function maintenance(Config $config, array $args, array $options): int
    {
        self::only($options, ['job', 'force']);
        self::noArgs($args);
        $db = Database::connect($config);
        $purged = $db->exec('DELETE FROM tmp_store WHERE expiry_date < UNIX_TIMESTAMP()');
        $ids = $db->query('SELECT id FROM products WHERE indexed_at IS NULL ORDER BY id LIMIT 100')
            ->fetchAll(\PDO::FETCH_COLUMN);
        $queued = 0;
        if ($ids !== []) {
            try {
                $redis = Cache::connect($config);
                foreach ($ids as $id) {
                    Queue::push($redis, 'pimcore_maintenance', ['type' => 'product.index', 'id' => (int) $id]);
                    $queued++;
                }
            } catch (\RedisException $e) {
                fwrite(STDERR, 'console: maintenance: queueing failed: ' . $e->getMessage() . "\n");
            }
        }
        $db->prepare('REPLACE INTO settings_store (id, data) VALUES (?, ?)')
            ->execute(['maintenance.last_run', gmdate('c')]);
        echo "[OK] maintenance: $purged expired tmp_store rows purged, $queued products queued for indexing\n";
        return 0;
    }

    /** Until --time-limit seconds passed, --limit messages ran, or a stop signal came. */
    private function consume(Config $config, array $transports, array $options): int
    {
        self::only($options, ['time-limit', 'limit', 'memory-limit', 'sleep']);
        // Any transport name Pimcore's command lines give (pimcore_image_optimize, …) is a
        // queue here; only the app's own ones ever get messages.
        foreach ($transports as $t) {
            if (!preg_match('/^[a-z][a-z0-9_]{0,63}$/', $t)) {
                throw new UsageError("'$t' is not a transport name");
            }
        }
        $transports = $transports === [] ? Queue::TRANSPORTS : array_values(array_unique($transports));
        $timeLimit = self::intOption($options, 'time-limit');
        $limit = self::intOption($options, 'limit');
        // A stop (SIGTERM, or SIGQUIT as the stack's stop_signal) ends the loop after the
        // current message, like Messenger's worker.
        pcntl_async_signals(true);
        foreach ([SIGTERM, SIGQUIT, SIGINT] as $sig) {
            pcntl_signal($sig, function () {
                $this->stop = true;
            });
        }
        $deadline = $timeLimit === null ? null : microtime(true) + $timeLimit;
        $db = Database::connect($config);
        $redis = Cache::connect($config, 3.0);
        $handled = 0;
        fwrite(STDERR, 'console: consuming ' . implode(', ', $transports) . "\n");
        while (!$this->stop && ($limit === null || $handled < $limit)) {
            $left = $deadline === null ? 1.0 : $deadline - microtime(true);
            if ($left <= 0) {
                break;
            }
            // Waits a second at most, so the time limit and a stop signal are seen in time.
            $got = Queue::pop($redis, $transports, 1);
            if ($got === null) {
                continue;
            }
            [$transport, $message] = $got;
            $result = $message === null ? 'dropped: not a JSON object' : Queue::handle($db, $config, $message);
            fwrite(STDERR, "console: $transport: $result\n");
            $handled++;
        }
        $why = $this->stop ? 'stop signal' : ($limit !== null && $handled >= $limit ? 'message limit' : 'time limit');
        echo "[OK] Stopped after $handled messages ($why).\n";
        return 0;
    }

    private function cacheClear(Config $config, array $args, array $options): int
    {
        self::only($options, ['env']);
        self::noArgs($args);
        $n = Cache::clear(Cache::connect($config));
        echo "[OK] Cache cleared ($n keys).\n";
        return 0;
    }

    private function seed(Config $config, array $args, array $options): int
    {
        self::only($options, []);
        $n = $args[0] ?? null;
        if (count($args) !== 1 || !ctype_digit((string) $n) || (int) $n < 1 || (int) $n > 10_000_000) {
            throw new UsageError('app:seed takes one number of products (1 … 10000000)');
        }
        $total = Products::seed(Database::connect($config), (int) $n);
        echo "[OK] Seeded $n products ($total in total).\n";
        return 0;
    }

    // --- arguments

    /**
     * Positional arguments and long options (--name, --name=value, --name value; -n, -q, -v… are
     * Symfony's global flags and accepted everywhere; -c/-d are classes-rebuild's).
     *
     * @param list<string> $argv
     * @return array{0: list<string>, 1: array<string, string|true>}
     */
    private static function parse(array $argv): array
    {
        $short = ['c' => 'create-classes', 'd' => 'delete-classes'];
        $global = ['no-interaction', 'quiet', 'verbose', 'no-debug', 'ansi', 'no-ansi'];
        // Options that take a value, as "--name=value" or "--name value".
        $valued = ['time-limit', 'limit', 'memory-limit', 'sleep', 'env', 'job'];
        $positional = [];
        $options = [];
        for ($i = 0; $i < count($argv); $i++) {
            $a = $argv[$i];
            if (preg_match('/^--([a-z][a-z-]*)(?:=(.*))?$/s', $a, $m)) {
                if (!isset($m[2]) && in_array($m[1], $valued, true)) {
                    if (!isset($argv[$i + 1])) {
                        throw new UsageError("--{$m[1]} needs a value");
                    }
                    $m[2] = $argv[++$i];
                }
                if (!in_array($m[1], $global, true)) {
                    $options[$m[1]] = $m[2] ?? true;
                }
            } elseif (preg_match('/^-([a-zA-Z]+)$/', $a, $m)) {
                foreach (str_split($m[1]) as $c) {
                    if (isset($short[$c])) {
                        $options[$short[$c]] = true;
                    } elseif (!in_array($c, ['n', 'q', 'v'], true)) {
                        throw new UsageError("unknown option -$c");
                    }
                }
            } else {
                $positional[] = $a;
            }
        }
        return [$positional, $options];
    }

    private static function only(array $options, array $allowed): void
    {
        foreach (array_keys($options) as $o) {
            if (!in_array($o, $allowed, true)) {
                throw new UsageError("unknown option --$o");
            }
        }
    }

    private static function noArgs(array $args): void
    {
        if ($args !== []) {
            throw new UsageError("unexpected argument '{$args[0]}'");
        }
    }

    private static function intOption(array $options, string $name): ?int
    {
        if (!isset($options[$name])) {
            return null;
        }
        $v = $options[$name];
        if (!is_string($v) || !ctype_digit($v)) {
            throw new UsageError("--$name needs a whole number");
        }
        return (int) $v;
    }
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/** The front controller's routes and pages. */
final class Http
{
    public function __construct(private readonly Config $config)
    {
    }

    /** Answer the current request (from $_SERVER, $_FILES, php://input). */
    public function handle(string $method, string $uri): void
    {
        $path = (string) (parse_url($uri, PHP_URL_PATH) ?? '/');
        header('X-Pimops-App: stand-in for Pimcore');
        if ($path === '/') {
            $this->only($method, ['GET', 'HEAD']) && $this->home();
        } elseif (preg_match('#^/product/([0-9]{1,10})$#', $path, $m)) {
            $this->only($method, ['GET', 'HEAD']) && $this->product((int) $m[1]);
        } elseif ($path === '/health') {
            $this->only($method, ['GET', 'HEAD']) && $this->health();
        } elseif ($path === '/upload') {
            if ($this->only($method, ['GET', 'HEAD', 'POST'])) {
                $method === 'POST' ? $this->upload() : $this->uploadForm();
            }
        } elseif ($path === '/admin/class') {
            $this->only($method, ['POST']) && $this->writeClass();
        } else {
            $this->page(404, 'Not found', '<p>Nothing here.</p>');
        }
    }

    /** Whether $method is allowed; answers 405 when not. */
    private function only(string $method, array $allowed): bool
    {
        if (in_array($method, $allowed, true)) {
            return true;
        }
        header('Allow: ' . implode(', ', $allowed));
        $this->text(405, "method $method not allowed\n");
        return false;
    }

    private function home(): void
    {
        $db = Database::connect($this->config);
        $rows = '';
        foreach (Products::latest($db, 20) as $p) {
            $rows .= sprintf(
                '<li><a href="/product/%d">%s</a> %s (%s)</li>',
                $p['id'],
                self::e($p['name']),
                self::e($p['price']),
                self::e($p['sku']),
            );
        }
        $count = Products::count($db);
        $this->page(200, 'Products', "<p>$count products.</p><ul>$rows</ul>"
            . '<p><a href="/upload">Upload an asset</a> · <a href="/health">Health</a></p>');
    }

    private function product(int $id): void
    {
        $config = $this->config;
        $cache = Cache::open($config);
        [$p, $how] = $cache->remember(
            "product:$id",
            $config->cacheTtl,
            fn () => Products::find(Database::connect($config), $id),
        );
        header("X-Pimops-Cache: $how");
        if (!is_array($p)) {
            $this->page(404, 'No such product', "<p>There is no product $id.</p>");
            return;
        }
        $fields = '';
        foreach ($p as $k => $v) {
            $fields .= sprintf('<tr><th>%s</th><td>%s</td></tr>', self::e((string) $k), self::e((string) ($v ?? '')));
        }
        $this->page(200, (string) $p['name'], sprintf(
            '<table class="product" data-id="%d" data-sku="%s">%s</table><p class="cache">cache: %s</p>',
            $p['id'],
            self::e((string) $p['sku']),
            $fields,
            $how,
        ));
    }

    /** 200 with both up, 503 otherwise: {"status":"UP"|"DOWN","db":"up"|"down","redis":"up"|"down"}. */
    private function health(): void
    {
        $db = 'down';
        try {
            Database::connect($this->config, 2)->query('SELECT 1')->fetchColumn();
            $db = 'up';
        } catch (\PDOException $e) {
            error_log('pimops: health: database: ' . $e->getMessage());
        }
        $redis = 'down';
        try {
            $r = Cache::connect($this->config);
            $pong = $r->ping();
            $redis = ($pong === true || $pong === '+PONG' || $pong === 'PONG') ? 'up' : 'down';
        } catch (\RedisException $e) {
            error_log('pimops: health: redis: ' . $e->getMessage());
        }
        $up = $db === 'up' && $redis === 'up';
        header('Cache-Control: no-store');
        $this->json($up ? 200 : 503, ['status' => $up ? 'UP' : 'DOWN', 'db' => $db, 'redis' => $redis]);
    }

    private function uploadForm(): void
    {
        $this->page(200, 'Upload an asset', '<form method="post" enctype="multipart/form-data">'
            . '<input type="file" name="file"> <button>Upload</button></form>'
            . '<p>Files go to the asset volume (public/var/assets/uploads) and are served by nginx.</p>');
    }

    /** POST multipart, field "file": 201 {"id","path","url","size","sha256","mime"}. */
    private function upload(): void
    {
        $file = $_FILES['file'] ?? null;
        if (!is_array($file) || !is_string($file['tmp_name'] ?? null) || !is_string($file['name'] ?? null)) {
            $this->json(400, ['error' => 'send the file as multipart form field "file"']);
            return;
        }
        $error = (int) ($file['error'] ?? UPLOAD_ERR_NO_FILE);
        if ($error === UPLOAD_ERR_INI_SIZE || $error === UPLOAD_ERR_FORM_SIZE) {
            $this->json(413, ['error' => 'the file is larger than ' . ini_get('upload_max_filesize')]);
            return;
        }
        if ($error !== UPLOAD_ERR_OK) {
            $this->json(400, ['error' => "the upload failed (PHP upload error $error)"]);
            return;
        }
        try {
            Assets::safeName($file['name']);
        } catch (\InvalidArgumentException $e) {
            $this->json(415, ['error' => $e->getMessage()]);
            return;
        }
        $asset = Assets::store(Database::connect($this->config), $this->config, $file['tmp_name'], $file['name']);
        try {
            Queue::push(Cache::connect($this->config), 'pimcore_asset_update', ['type' => 'asset.update', 'id' => $asset['id']]);
        } catch (\RedisException $e) {
            // The asset is stored; maintenance would process it later in real Pimcore too.
            error_log('pimops: upload: queueing asset.update failed: ' . $e->getMessage());
        }
        $this->json(201, $asset);
    }

    /** POST JSON {"name": …, "fields": […]}: writes var/classes/NAME.json where allowed. */
    private function writeClass(): void
    {
        if (!$this->config->classesWritable) {
            $this->text(403, "class definitions come from git (PIMCORE_CLASS_DEFINITION_WRITABLE=0 in {$this->config->env})\n");
            return;
        }
        try {
            $def = ClassDefinitions::validate(json_decode((string) file_get_contents('php://input'), true, 64, JSON_THROW_ON_ERROR));
        } catch (\JsonException | \InvalidArgumentException $e) {
            $this->json(400, ['error' => $e->getMessage()]);
            return;
        }
        $path = ClassDefinitions::write($this->config, $def);
        $this->json(201, ['written' => substr($path, strlen($this->config->appDir) + 1)]);
    }

    // --- responses

    public static function e(string $s): string
    {
        return htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
    }

    private function json(int $status, array $body): void
    {
        http_response_code($status);
        header('Content-Type: application/json');
        echo json_encode($body, JSON_UNESCAPED_SLASHES), "\n";
    }

    private function text(int $status, string $body): void
    {
        http_response_code($status);
        header('Content-Type: text/plain; charset=utf-8');
        echo $body;
    }

    public function page(int $status, string $title, string $body): void
    {
        http_response_code($status);
        header('Content-Type: text/html; charset=utf-8');
        $env = self::e($this->config->env);
        $t = self::e($title);
        echo <<<HTML
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>$t · pimops</title>
            <link rel="stylesheet" href="/static/pimops.css"></head>
            <body><header class="standin">pimops stand-in for Pimcore (env $env): a small PHP app
            in place of Pimcore, which cannot be fetched here.</header>
            <main><h1>$t</h1>$body</main></body></html>

            HTML;
    }
}

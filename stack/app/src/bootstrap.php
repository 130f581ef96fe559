<?php
// The stand-in's classes, without Composer (nothing is fetched to build the image).
declare(strict_types=1);

require_once __DIR__ . '/ConfigError.php';
require_once __DIR__ . '/UsageError.php';
require_once __DIR__ . '/Config.php';
require_once __DIR__ . '/Database.php';
require_once __DIR__ . '/Cache.php';
require_once __DIR__ . '/Schema.php';
require_once __DIR__ . '/Products.php';
require_once __DIR__ . '/ClassDefinitions.php';
require_once __DIR__ . '/Assets.php';
require_once __DIR__ . '/Queue.php';
require_once __DIR__ . '/Http.php';
require_once __DIR__ . '/Console.php';

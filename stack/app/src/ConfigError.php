<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/** A setting from the environment is missing or malformed; the message names it. */
final class ConfigError extends \RuntimeException
{
}

<?php
declare(strict_types=1);

namespace Pimops\StandIn;

/** A bad bin/console command line: exit code 2. */
final class UsageError extends \RuntimeException
{
}

"""`python -m checkoutctl …`, the same as the `checkoutctl` console script."""

from checkoutctl.cli import main

raise SystemExit(main())

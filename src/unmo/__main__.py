from unmo.cli import main

raise SystemExit(main())

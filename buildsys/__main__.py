from buildsys.cli import main

raise SystemExit(main())

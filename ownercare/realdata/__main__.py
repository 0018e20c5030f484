from ownercare.realdata.cli import main

raise SystemExit(main())

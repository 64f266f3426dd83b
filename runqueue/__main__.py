from runqueue.cli import main

main()

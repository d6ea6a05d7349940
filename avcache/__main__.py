from avcache.cli import main

main()

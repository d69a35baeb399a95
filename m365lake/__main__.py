from m365lake.cli import main

main()

from emo_cli.cli import main

main()

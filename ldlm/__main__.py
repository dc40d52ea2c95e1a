from ldlm.cli import main

main()

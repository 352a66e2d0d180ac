from rgvlm_core.cli import main

main()

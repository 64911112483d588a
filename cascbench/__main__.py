from cascbench.cli import main

main()

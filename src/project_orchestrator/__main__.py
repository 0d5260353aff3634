from project_orchestrator.cli import main

main()

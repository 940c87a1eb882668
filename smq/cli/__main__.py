from smq.cli import main

main(prog_name="smq")

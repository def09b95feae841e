"""The command examples README shows with their output, for the tests that check the output
against the committed results it came from."""
import os
import shlex

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def shown_commands(command):
    """(arguments, printed lines) of each example of `command` ("python -m ...") in README: a
    `$ command ...` line with its continuation lines, then the lines it printed up to a blank
    line or the next `$`."""
    prompt = f"$ {command} "
    with open(README, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    commands = []
    for number, line in enumerate(lines):
        if not line.startswith(prompt):
            continue
        shown = line
        while shown.endswith("\\"):
            number += 1
            shown = shown[:-1] + lines[number]
        output = []
        for line in lines[number + 1:]:
            if not line or line.startswith("$"):
                break
            output.append(line)
        commands.append((shlex.split(shown[len(prompt):]), output))
    return commands

"""(not implemented yet)"""


def add_arguments(p):
    pass


def run(args):
    from ..errors import GenreFusionError

    raise GenreFusionError("not implemented yet")

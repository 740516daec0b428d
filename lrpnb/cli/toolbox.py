"""``lrpnb toolbox``: the Caffe LRP Toolbox's standalone batch mode, driven
by its config file and file list (:func:`lrpnb.toolbox_mode.explain_filelist`)."""

__all__ = ["add_parser", "run"]


def add_parser(commands):
    """The ``toolbox`` command and its options."""
    toolbox = commands.add_parser(
        "toolbox", help="the Caffe LRP Toolbox's batch mode (config file + file list)",
        description="Explain the images of a file list as the Caffe LRP Toolbox's standalone "
                    "executable does, driven by its config file; writes <name>_rawhm.txt, "
                    "<name>_heatmap.png, <name>_as_inputted_into_the_dnn.png and "
                    "<name>_toptenscores.txt per image, only inside standalone_outpath (no symbolic "
                    "link may lead out of it), never over a file the run reads, and under a lock on "
                    "that folder that refuses a second run into it.")
    toolbox.add_argument("-c", "--config", required=True, help="config file (key line, value line)")
    toolbox.add_argument("-f", "--filelist", required=True,
                         help="file list: image path and target (-1 top class, -2 top 5, k class k)")
    toolbox.add_argument("-p", "--pathprefix", default="",
                         help="prefix joined to every image path of the list")
    toolbox.set_defaults(run=run)


def run(args):
    """Run ``lrpnb toolbox``; Failure where entries failed."""
    from ..toolbox_mode import explain_filelist

    explain_filelist(args.config, args.filelist, args.pathprefix)

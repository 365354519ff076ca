"""Everything that turns a file into a model of the zoo: the model factory (``zoo``), checkpoint
files of every format with downloads and hash checks (``weights``), and Keras files (``keras``)."""

"""badseg: backdoor (data-poisoning) attacks on semantic segmentation.

Implements the BADSEG framework ("Poisoning the Pixels: Revisiting Backdoor Attacks on
Semantic Segmentation") and the earlier attacks it is compared with. See README.md for the
map of the code and ../shared/DESIGN.md for the contracts.
"""

__version__ = "0.1.0"

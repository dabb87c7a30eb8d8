import MetaCore
print("metactl")

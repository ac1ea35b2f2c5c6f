# check=experimental=InvalidDefinitionDescription
FROM scratch AS base
COPY a /

# this is not a description of the stage
FROM base AS final
